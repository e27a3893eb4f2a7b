"""`manage.py analyze missing-votes`: the original ctop's `analyzer missing-votes --poll.frequency 30s
--network osmosis`, on one, several or every enabled chain."""

from __future__ import annotations

import threading

from django.core.management.base import BaseCommand

from analysis.runner import MissingVoteAnalyzer
from ctop_project.cli import parse_duration
from ctop_project.commands import command_chains, require_database, stop_on_signals


class Command(BaseCommand):
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
            help="How often to judge new heights (default 30s).",
        )
        parser.add_argument("--once", action="store_true", help="One pass, then exit.")

    def handle(self, *args, **opts) -> None:
        require_database()
        chains = command_chains(opts["networks"])
        analyzer = MissingVoteAnalyzer(chains)
        stop = threading.Event()
        stop_on_signals(stop)
        while not stop.is_set():
            analyzer.run_once()
            if opts["once"]:
                break
            stop.wait(opts["poll_frequency"].total_seconds())
