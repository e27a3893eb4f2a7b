"""`manage.py index_validators`: the active set of every watched chain, with its full history.

The original ctop's `validator-indexer --poll.frequency 60s --networks <name>,<rpc>`. Started before
its chains exist (or before PostgreSQL answers), it waits for them; chains added later are indexed
from the next poll.
"""

from __future__ import annotations

import threading

from django.core.management.base import CommandError

from common import metrics
from common.cli import CtopCommand, parse_duration
from common.commands import require_database, stop_on_signals, wait_for_database
from consensus.networks import chain_watch, wait_for_chains
from validators.runner import IndexerRunner
from validators.status import parse_rest_urls, with_rest_urls


class Command(CtopCommand):
    help = "Index the validator sets of the watched chains, recording every change at its height."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--networks",
            default="",
            help="Chain names, or name,url pairs as in subscribe_events (default: every enabled chain).",
        )
        parser.add_argument(
            "--poll-frequency",
            "--poll.frequency",
            dest="poll_frequency",
            type=parse_duration,
            default="60s",
            help="How often to poll, e.g. 30s, 5m, 1h (default 60s).",
        )
        parser.add_argument(
            "--db.url",
            dest="db_url",
            default=None,
            help="Accepted for the original's syntax; set DATABASE_URL instead.",
        )
        parser.add_argument(
            "--status-frequency",
            dest="status_frequency",
            type=parse_duration,
            default=None,
            help="How often to read validator status and jail-risk counters from the REST API (default: the poll"
            " frequency).",
        )
        parser.add_argument(
            "--rest",
            action="append",
            default=[],
            metavar="NAME=URL",
            help="A chain's Cosmos SDK REST API (status, monikers, jail risk), e.g. cosmoshub=https://lcd.example;"
            " repeatable. Sets the chain's rest_url (also editable in the admin).",
        )
        parser.add_argument("--once", action="store_true", help="One pass over every chain, then exit.")
        metrics.add_arguments(parser)

    def handle(self, *args, **opts) -> None:
        if opts["db_url"]:
            raise CommandError(
                "--db.url is not used by ctop: set DATABASE_URL in the environment or .env", returncode=2
            )
        watch = chain_watch(opts["networks"], with_urls="://" in opts["networks"])
        interval = opts["poll_frequency"].total_seconds()
        status_interval = opts["status_frequency"].total_seconds() if opts["status_frequency"] else None
        try:
            rest = parse_rest_urls(opts["rest"])
        except ValueError as exc:
            raise CommandError(str(exc), returncode=2) from None

        def chains() -> list:
            return with_rest_urls(watch.current(), rest)

        if opts["once"]:
            require_database()
            once = chains()
            if not once:
                raise CommandError(f"no chains to index ({watch.describe()})", returncode=1)
            failures = IndexerRunner(lambda: once, interval=interval).run_once()
            if failures:
                raise CommandError(f"{failures} chain(s) could not be indexed (see the log)", returncode=1)
            return
        stop = threading.Event()
        stop_on_signals(stop)
        later = metrics.Later()
        metrics.serve("index_validators", later, opts["metrics_port"], opts["metrics_host"])
        if not wait_for_database(stop) or not wait_for_chains(watch, stop):
            return
        runner = IndexerRunner(chains, interval=interval, status_interval=status_interval)
        later.source = runner
        runner.run(stop)
