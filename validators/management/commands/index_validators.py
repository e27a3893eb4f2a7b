"""`manage.py index_validators`: the active set of every watched chain, with its full history.

The original ctop's `validator-indexer --poll.frequency 60s --networks <name>,<rpc>`.
"""

from __future__ import annotations

import logging
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections

from ctop_project.cli import parse_duration
from ctop_project.commands import command_chains, require_database, stop_on_signals
from validators.indexer import ChainIndexer, IndexerError
from validators.monikers import refresh_monikers

log = logging.getLogger("ctop.indexer")


class Command(BaseCommand):
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
        parser.add_argument("--once", action="store_true", help="One pass over every chain, then exit.")

    def handle(self, *args, **opts) -> None:
        if opts["db_url"]:
            raise CommandError(
                "--db.url is not used by ctop: set DATABASE_URL in the environment or .env", returncode=2
            )
        require_database()
        chains = command_chains(opts["networks"], with_urls="://" in opts["networks"])
        stop = threading.Event()
        stop_on_signals(stop)
        interval = opts["poll_frequency"].total_seconds()
        failures = 0
        while not stop.is_set():
            failures = 0
            for chain in chains:
                if stop.is_set():
                    break
                try:
                    ChainIndexer(chain).run_once()
                    refresh_monikers(chain)
                except IndexerError:
                    failures += 1  # logged; the history is untouched
                except DatabaseError as exc:
                    failures += 1
                    log.error("%s: database unavailable (%s); retrying next poll", chain.name, exc)
                    close_old_connections()
            if opts["once"]:
                break
            stop.wait(interval)
        if opts["once"] and failures:
            raise CommandError(f"{failures} chain(s) could not be indexed (see the log)", returncode=1)
