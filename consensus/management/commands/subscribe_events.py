"""`manage.py subscribe_events`: consensus events of every watched chain into Redis Streams.

The original ctop's `event-subscription-service --networks <name>,<rpc> --redis.url <url>`.
"""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.core.management.base import CommandError
from django.db import close_old_connections

from common import metrics
from common.cli import CtopCommand, parse_duration
from common.commands import stop_on_signals, wait_for_database
from common.text import one_line, redact_url
from consensus.models import Chain
from consensus.networks import chain_watch, wait_for_chains
from consensus.streams import connect
from consensus.subscriber import ChainTarget, Options, SubscribeRunner

log = logging.getLogger("ctop.subscriber")


def seconds(text: str) -> float:
    return parse_duration(text).total_seconds()


_no_endpoint_said: set[str] = set()


def chain_targets(chains: list) -> list[ChainTarget]:
    """What the runner watches: each chain with its enabled endpoints (a chain without one waits
    until it has one, said once in the log)."""
    close_old_connections()
    targets = []
    for chain in chains:
        endpoints = [(e.url, e.priority) for e in chain.endpoints.filter(enabled=True)]
        if not endpoints:
            if chain.name not in _no_endpoint_said:
                log.warning("chain %s has no enabled endpoint: waiting for one (add it in the admin)", chain.name)
                _no_endpoint_said.add(chain.name)
            continue
        targets.append(ChainTarget(chain.name, chain.chain_id, endpoints, adopter(chain.pk)))
    return targets


def adopter(chain_pk: int):
    def adopt(reported: str) -> str:
        close_old_connections()
        chain = Chain.objects.get(pk=chain_pk)
        chain.check_chain_id(reported)  # raises ChainIdMismatch if another process learned a different one
        return chain.chain_id

    return adopt


class Command(CtopCommand):
    help = "Subscribe to NewRound, NewRoundStep and Vote events of every watched chain and append them to Redis."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--networks",
            default="",
            help="name,url[,name,url...] (tcp/http/https/ws/wss URLs; repeat a name for failover "
            "endpoints). Default: every enabled chain in the database.",
        )
        parser.add_argument(
            "--redis.url", "--redis-url", dest="redis_url", default=None, help="Redis URL (default REDIS_URL)."
        )
        parser.add_argument("--max-events", type=int, default=None, help="Exit after delivering this many entries.")
        parser.add_argument("--duration", type=seconds, default=None, help="Exit after this long, e.g. 30s.")
        parser.add_argument(
            "--silence-timeout",
            type=seconds,
            default=30.0,
            help="Reconnect when the feed is silent this long while the chain advances (30s).",
        )
        parser.add_argument(
            "--health-interval", type=seconds, default=10.0, help="How often every endpoint's /status is checked (10s)."
        )
        parser.add_argument(
            "--stale-after",
            type=seconds,
            default=60.0,
            help="An endpoint whose latest block is this much older than the others' is lagging.",
        )
        parser.add_argument(
            "--max-lag-blocks",
            type=int,
            default=5,
            help="An endpoint this many heights behind the others is lagging (5).",
        )
        parser.add_argument(
            "--buffer-mb", type=int, default=256, help="Megabytes of events held in memory while Redis is away (256)."
        )
        parser.add_argument(
            "--backfill-limit",
            type=int,
            default=1000,
            help="Most recent heights of a gap to backfill from /block (1000).",
        )
        parser.add_argument("--log-interval", type=seconds, default=10.0, help="Per-chain stats log interval (10s).")
        parser.add_argument(
            "--max-frame-kb",
            type=int,
            default=None,
            help="Largest websocket message accepted, in KiB (default CTOP_WS_MAX_FRAME_KB, 1024); a longer "
            "one drops the connection and the heights missed meanwhile are a gap.",
        )
        parser.add_argument(
            "--plausible-heights",
            type=int,
            default=None,
            help="Heights accepted either side of the chain's plausible current height (default "
            "CTOP_PLAUSIBLE_HEIGHTS, 100); frames outside are refused and dead-lettered.",
        )
        metrics.add_arguments(parser)

    def handle(self, *args, **opts) -> None:
        # What can never become valid first (exit 2, before anything connects): the --networks
        # syntax and the numbers.
        watch = chain_watch(opts["networks"], with_urls=True)
        for name in (
            "max_events",
            "buffer_mb",
            "backfill_limit",
            "max_lag_blocks",
            "max_frame_kb",
            "plausible_heights",
        ):
            if opts[name] is not None and opts[name] <= 0:
                raise CommandError(f"--{name.replace('_', '-')} must be positive", returncode=2)
        stop = threading.Event()
        stop_on_signals(stop)
        # What may come later is waited for: PostgreSQL (for the chains and their endpoints), and
        # chains at all when none is named yet.
        if not wait_for_database(stop) or not wait_for_chains(watch, stop, every=5.0):
            return
        targets = chain_targets(watch.current())
        client = connect(opts["redis_url"] or settings.REDIS_URL)
        try:
            client.ping()
        except Exception as exc:
            log.error(
                "Redis at %s is unavailable (%s); events are buffered in memory until it is back",
                redact_url(opts["redis_url"] or settings.REDIS_URL),
                one_line(exc),
            )
        options = Options(
            silence_timeout=opts["silence_timeout"],
            health_interval=opts["health_interval"],
            stale_after=opts["stale_after"],
            max_lag_blocks=opts["max_lag_blocks"],
            backfill_limit=opts["backfill_limit"],
            max_frame_bytes=(opts["max_frame_kb"] or 0) * 1024,
            plausible_heights=opts["plausible_heights"] or 0,
        )
        runner = SubscribeRunner(
            targets,
            client=client,
            options=options,
            maxlen=settings.CTOP["STREAM_MAXLEN"],
            buffer_bytes=opts["buffer_mb"] * 2**20,
            max_events=opts["max_events"],
            log_interval=opts["log_interval"],
            stop=stop,
        )
        metrics.serve("subscribe_events", runner.metrics, opts["metrics_port"], opts["metrics_host"])
        close_old_connections()
        log.info("watching %s", ", ".join(f"{t.name} ({len(t.endpoints)} endpoint(s))" for t in targets))
        report = runner.run(duration=opts["duration"], refresh=lambda: chain_targets(watch.current()))
        self.stdout.write(
            f"delivered {report.delivered} entries to Redis"
            + (f"; {report.undelivered} NOT delivered" if report.undelivered else "")
        )
        if report.undelivered:
            raise CommandError("some received entries were not delivered to Redis", returncode=1)
