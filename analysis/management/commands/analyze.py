"""`manage.py analyze missing-votes`: the original ctop's `analyzer missing-votes --poll.frequency 30s
--network osmosis`, on one, several or every enabled chain.

Started before its chains exist (or before PostgreSQL answers), it waits for them; chains added
later are picked up on the next tick.
"""

from __future__ import annotations

import logging
import threading
import time

from django.core.management.base import CommandError
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections

from analysis.notify import Notifier, send_due
from analysis.runner import MissingVoteAnalyzer
from common import metrics
from common.cli import CtopCommand, parse_duration
from common.commands import require_database, stop_on_signals, wait_for_database
from common.text import first_line
from consensus.networks import chain_watch, wait_for_chains

log = logging.getLogger("ctop.analyzer")

MIN_TICK_GAP = 0.5  # seconds between ticks woken early by look-ups that came back


class Command(CtopCommand):
    help = "Run an analyzer. Available: missing-votes."

    def add_arguments(self, parser) -> None:
        parser.add_argument("analyzer", choices=["missing-votes"])
        parser.add_argument(
            "--network",
            "--networks",
            dest="networks",
            default="",
            help="Chain name(s), comma-separated (default: every enabled chain).",
        )
        parser.add_argument(
            "--poll-frequency",
            "--poll.frequency",
            dest="poll_frequency",
            type=parse_duration,
            default="30s",
            help="How often to judge new heights (default 30s); sooner when a node's answer comes back.",
        )
        parser.add_argument("--once", action="store_true", help="One pass (and the look-ups it needs), then exit.")
        metrics.add_arguments(parser)

    def handle(self, *args, **opts) -> None:
        watch = chain_watch(opts["networks"])
        if opts["once"]:
            require_database()
            chains = watch.current()
            if not chains:
                raise CommandError(f"no chains to analyse ({watch.describe()})", returncode=1)
            analyzer = MissingVoteAnalyzer(chains, lookup_workers=0)
            try:
                judged = analyzer.settle()
                send_due()
            finally:
                analyzer.close()
            self.stdout.write(f"judged {judged} height(s)")
            return
        stop = threading.Event()
        stop_on_signals(stop)
        later = metrics.Later()
        metrics.serve("analyze", later, opts["metrics_port"], opts["metrics_host"])
        if not wait_for_database(stop) or not wait_for_chains(watch, stop):
            return
        analyzer = MissingVoteAnalyzer(watch.current)
        later.source = analyzer
        notifier = Notifier().start()
        log.info("analysing %s", watch.describe())
        interval = opts["poll_frequency"].total_seconds()
        try:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    analyzer.run_once()
                    notifier.wake()
                except (OperationalError, InterfaceError) as exc:
                    log.error("PostgreSQL unavailable (%s); waiting for it", first_line(exc))
                    close_old_connections()
                    if not wait_for_database(stop):
                        break
                except DatabaseError as exc:
                    log.error("a tick failed in the database (%s); the next tick tries again", first_line(exc))
                    close_old_connections()
                # Until the next poll, or until a node's answer came back (not sooner than MIN_TICK_GAP).
                deadline = started + interval
                while not stop.is_set() and time.monotonic() < deadline:
                    if analyzer.wake.wait(min(1.0, max(deadline - time.monotonic(), 0.01))):
                        stop.wait(max(0.0, started + MIN_TICK_GAP - time.monotonic()))
                        break
        finally:
            notifier.close()
            analyzer.close()
