"""The committing half of a pipelined stream consumer: while the consumer reads and decodes the
next unit of work, this thread stores the previous one (PostgreSQL's time and Python's overlap)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections


class Committer:
    """One thread storing units of work in the order submitted (acknowledged after their commit).

    store(work) returns 0 when it could not store (PostgreSQL away): from then on what is queued is
    dropped unstored (still pending in Redis, re-read later) until the consumer clears `failed`."""

    def __init__(self, store: Callable[[Any], int], stop: threading.Event) -> None:
        self._store = store
        self._stop = stop
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.failed = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="stream-commit", daemon=True)
        self.thread.start()

    def submit(self, work: Any) -> None:
        self.queue.put(work)

    def _loop(self) -> None:
        while True:
            work = self.queue.get()
            try:
                if work is None:
                    return
                if self.failed.is_set():
                    continue  # still pending in Redis: re-read once the database is back
                if not self._store(work):
                    self.failed.set()
            finally:
                self.queue.task_done()
                if work is None or self._stop.is_set():
                    close_old_connections()

    def take_failure(self) -> bool:
        """True once after a failed store, when everything queued since has been dropped (it is
        still pending in Redis): the consumer then re-reads what it holds."""
        if not self.failed.is_set():
            return False
        self.queue.join()
        self.failed.clear()
        return True

    def drained(self) -> bool:
        """Everything submitted has been stored (or dropped after a failure: then False)."""
        self.queue.join()
        return not self.failed.is_set()

    def close(self) -> None:
        self.queue.join()
        self.queue.put(None)
        self.thread.join(10)
