"""What every long-running ctop command shares: signal handling, clean exits, and waiting for what
it needs (PostgreSQL, its chains) instead of exiting when it starts before them."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

from common.text import first_line, one_line

log = logging.getLogger("ctop")


# A stop signal repeated within this many seconds is the same stop delivered twice (a terminal's
# Ctrl-C reaches the whole process group, and a supervisor such as honcho or `stream_events
# --workers` forwards it too), not an operator insisting.
REPEAT_WINDOW = 1.0


class StopSignals:
    """Tells a stop signal apart: the first, the same stop delivered again (within REPEAT_WINDOW),
    or a second stop (an operator insisting)."""

    FIRST, REPEAT, SECOND = "first", "repeat", "second"

    def __init__(self) -> None:
        self._first: float | None = None

    @property
    def stopping(self) -> bool:
        return self._first is not None

    def arrived(self) -> str:
        now = time.monotonic()
        if self._first is None:
            self._first = now
            return self.FIRST
        return self.REPEAT if now - self._first <= REPEAT_WINDOW else self.SECOND


def stop_on_signals(stop: threading.Event | Callable[[], None]) -> None:
    """SIGTERM and SIGINT finish the unit of work at hand and exit; a second signal (more than
    REPEAT_WINDOW seconds after the first) exits at once, with status 1, finishing nothing."""
    signals = StopSignals()

    def handler(signum, frame):
        name = signal.Signals(signum).name
        seen = signals.arrived()
        if seen == StopSignals.SECOND:
            log.warning("second %s: exiting now, without finishing", name)
            logging.shutdown()
            os._exit(1)
        if seen == StopSignals.REPEAT:
            return
        log.info("received %s; finishing and exiting", name)
        stop.set() if isinstance(stop, threading.Event) else stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def database_problem() -> str | None:
    """None when PostgreSQL answers and the schema is current; else one line saying what is wrong."""
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    try:
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError as exc:
        settings_dict = connection.settings_dict
        with contextlib.suppress(DatabaseError):
            connection.close()
        return (
            f"PostgreSQL database {settings_dict['NAME']!r} at {settings_dict.get('HOST') or 'localhost'}:"
            f"{settings_dict.get('PORT') or 5432} is not reachable ({one_line(first_line(exc), 200)})"
        )
    if pending:
        return (
            f"the database schema is not up to date ({len(pending)} migration(s) pending): run "
            "'manage.py bootstrap' (or 'manage.py migrate')"
        )
    return None


def require_database() -> None:
    """For one-shot commands: one clear line and exit status 1 when PostgreSQL is not usable."""
    from django.core.management.base import CommandError

    problem = database_problem()
    if problem:
        raise CommandError(problem, returncode=1)


def wait_for_database(stop: threading.Event, *, every: float = 2.0) -> bool:
    """For long-running commands: wait until PostgreSQL answers with a current schema (it may come
    up after them, or be migrated after them), saying so once a minute. False if stopped first."""
    said = 0.0
    while not stop.is_set():
        problem = database_problem()
        if problem is None:
            if said:
                log.info("PostgreSQL is ready")
            return True
        if time.monotonic() - said >= 60:
            log.warning("%s; waiting for it", problem)
            said = time.monotonic()
        stop.wait(every)
    return False
