"""A few worker threads, at most one job per key in flight: one chain's (or one channel's) slow
work occupies one worker and delays nobody else's, and is never queued twice.

Jobs that use the database close their thread's connection when done: jobs are seconds apart, a
new connection costs milliseconds, and an idle worker then holds no connection (nor a broken one
after a PostgreSQL restart).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("ctop")


class KeyedPool:
    """workers=0 runs each job inline, in the caller's thread (one-shot commands, and tests whose
    database transaction other threads cannot see)."""

    def __init__(self, workers: int, name: str, *, on_done: Callable[[], None] | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) if workers else None
        self._busy: dict[Hashable, Future] = {}
        self._lock = threading.Lock()
        self.on_done = on_done

    def busy(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._busy

    def submit(self, key: Hashable, fn: Callable[[], object], *, what: str = "") -> bool:
        """Run `fn` unless a job for `key` is still running; False if it is (nothing queued)."""
        if self._executor is None:
            self._run(key, fn, what, inline=True)
            return True
        with self._lock:
            if key in self._busy:
                return False
            self._busy[key] = self._executor.submit(self._run, key, fn, what)
        return True

    def _run(self, key: Hashable, fn: Callable[[], object], what: str, inline: bool = False) -> None:
        from django.db import connections

        try:
            fn()
        except Exception:  # one job's failure is logged with its context; the pool goes on
            log.exception("%s failed", what or f"job {key!r}")
        finally:
            if not inline:
                connections.close_all()
            with self._lock:
                self._busy.pop(key, None)
            if self.on_done:
                self.on_done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait (at most `timeout` seconds in all) for the jobs in flight now; False if some are
        still running then (they go on; nothing is raised: a stop must not fail on a slow job)."""
        with self._lock:
            futures = list(self._busy.values())
        _, pending = concurrent.futures.wait(futures, timeout=timeout)
        return not pending

    def shutdown(self, wait: bool = True) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=wait, cancel_futures=True)
