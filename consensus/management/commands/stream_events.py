"""`manage.py stream_events`: the Redis Streams of the watched chains into PostgreSQL.

The original ctop's `redis-event-stream --redis.url --db.url --networks`.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.core.management.base import CommandError

from common import metrics
from common.cli import CtopCommand, parse_duration
from common.commands import stop_on_signals, wait_for_database
from consensus.ingest import LivePublisher, StreamConsumer, default_consumer_name
from consensus.ingest.consumer import Stats
from consensus.ingest.workers import supervise
from consensus.networks import chain_watch, wait_for_chains
from consensus.streams import connect

log = logging.getLogger("ctop.stream")


class Command(CtopCommand):
    help = "Persist the chains' event streams from Redis into PostgreSQL (at least once, idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--networks", default="", help="Chain names, comma-separated (default: every enabled chain)."
        )
        parser.add_argument(
            "--redis.url", "--redis-url", dest="redis_url", default=None, help="Redis URL (default REDIS_URL)."
        )
        parser.add_argument(
            "--db.url",
            dest="db_url",
            default=None,
            help="Accepted for the original's syntax; set DATABASE_URL instead.",
        )
        parser.add_argument("--consumer", default=None, help="Consumer name in the group (default host-pid).")
        parser.add_argument(
            "--batch",
            type=int,
            default=40,
            help="Stream entries per transaction (40; an entry holds up to 256 events).",
        )
        parser.add_argument(
            "--claim-idle",
            type=parse_duration,
            default="30s",
            help="Claim entries another consumer left pending this long (30s).",
        )
        parser.add_argument("--log-interval", type=parse_duration, default="10s", help="Stats log interval (10s).")
        parser.add_argument("--max-entries", type=int, default=None, help="Exit after this many entries.")
        parser.add_argument("--until-idle", action="store_true", help="Exit once the streams are drained.")
        parser.add_argument("--no-live", action="store_true", help="Do not publish updates for live pages.")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="Consumer processes (default 1); each takes entries from the same group. Use about one "
            "per core: decoding is CPU-bound.",
        )
        metrics.add_arguments(parser)

    def handle(self, *args, **opts) -> None:
        if opts["db_url"]:
            raise CommandError(
                "--db.url is not used by ctop: set DATABASE_URL in the environment or .env", returncode=2
            )
        if opts["batch"] <= 0:
            raise CommandError("--batch must be positive", returncode=2)
        if not 1 <= opts["workers"] <= 64:
            raise CommandError("--workers must be between 1 and 64", returncode=2)
        if opts["metrics_port"] and opts["metrics_port"] + opts["workers"] - 1 > 65535:
            raise CommandError("--metrics-port + --workers - 1 must be a port number (65535 at most)", returncode=2)
        watch = chain_watch(opts["networks"])
        name = opts["consumer"] or default_consumer_name()
        if opts["workers"] == 1:
            stats = self._consume(watch, name, opts)
            self.stdout.write(f"stored {stats.entries} stream entries in {stats.batches} batches")
            return
        # N processes, consumers "<name>-0" ... "<name>-N-1" on the one group (see ingest.workers).
        status = supervise(opts["workers"], lambda i: self._worker(watch, f"{name}-{i}", opts, i))
        if status:
            raise CommandError("a stream worker failed while stopping; see the log", returncode=1)

    def _worker(self, watch, name: str, opts: dict, index: int) -> int:
        stats = self._consume(watch, name, opts, index)
        log.info("consumer %s stored %d stream entries in %d batches", name, stats.entries, stats.batches)
        return 0

    def _consume(self, watch, name: str, opts: dict, index: int = 0):
        stop = threading.Event()
        stop_on_signals(stop)
        stats = Stats()
        # With --workers N, worker i serves its metrics on --metrics-port + i (from the start: a
        # worker waiting for PostgreSQL is up, not down).
        later = metrics.Later()
        port = opts["metrics_port"] + index if opts["metrics_port"] else 0
        metrics.serve("stream_events", later, port, opts["metrics_host"])
        # Started before PostgreSQL or before its chains exist (systemd starts every unit at once),
        # it waits for them instead of exiting; chains added later are picked up as it runs.
        if not wait_for_database(stop):
            return stats
        chains = watch.current() if opts["until_idle"] else wait_for_chains(watch, stop)
        if not chains:
            return stats
        publisher = None
        if not opts["no_live"]:
            publisher = LivePublisher()
            publisher.start()
        consumer = StreamConsumer(
            chains,
            client=connect(opts["redis_url"] or settings.REDIS_URL),
            consumer=name,
            count=opts["batch"],
            claim_idle_ms=int(opts["claim_idle"].total_seconds() * 1000),
            publisher=publisher,
        )
        consumer.stop = stop
        later.source = consumer
        log.info("consumer %s streaming %s", consumer.consumer, ", ".join(c.name for c in chains))
        stats = consumer.run(
            log_interval=opts["log_interval"].total_seconds(),
            max_entries=opts["max_entries"],
            idle_exit=opts["until_idle"],
            chains=watch.current,
        )
        if publisher:
            publisher.stop()
        return stats
