"""What every long-running ctop command shares: signal handling and clean exits."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger("ctop")


# A stop signal repeated within this many seconds is the same stop delivered twice (a terminal's
# Ctrl-C reaches the whole process group, and a supervisor such as honcho or `stream_events
# --workers` forwards it too), not an operator insisting.
REPEAT_WINDOW = 1.0


def stop_on_signals(stop: threading.Event | Callable[[], None]) -> None:
    """SIGTERM and SIGINT finish the unit of work at hand and exit; a second signal (more than
    REPEAT_WINDOW seconds after the first) exits at once."""
    first: list[float] = []

    def handler(signum, frame):
        now = time.monotonic()
        if first:
            if now - first[0] > REPEAT_WINDOW:
                raise KeyboardInterrupt
            return
        first.append(now)
        log.info("received %s; finishing and exiting", signal.Signals(signum).name)
        stop.set() if isinstance(stop, threading.Event) else stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def require_database() -> None:
    """One clear line instead of a traceback when PostgreSQL is down or the schema is missing."""
    from django.core.management.base import CommandError
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        settings_dict = connection.settings_dict
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(
            f"PostgreSQL database {settings_dict['NAME']!r} at {settings_dict.get('HOST') or 'localhost'}:"
            f"{settings_dict.get('PORT') or 5432} is not reachable ({first}); start it or set DATABASE_URL",
            returncode=2,
        ) from None
    if pending:
        raise CommandError(
            f"the database schema is not up to date ({len(pending)} migration(s) pending): run "
            "'manage.py bootstrap' (or 'manage.py migrate') first",
            returncode=2,
        )


def command_chains(networks: str, *, with_urls: bool = False) -> list:
    """The chains a command works on (see consensus.networks.select_chains), or a one-line usage
    error with exit status 2: a bad --networks list, an unknown name, or no chain at all."""
    from django.core.management.base import CommandError

    from consensus.networks import NetworksError, select_chains

    try:
        chains = select_chains(networks=networks, with_urls=with_urls)
    except NetworksError as exc:
        raise CommandError(str(exc), returncode=2) from None
    if not chains:
        raise CommandError("no chains to work on: add them with --networks name,url or in the admin", returncode=2)
    return chains
