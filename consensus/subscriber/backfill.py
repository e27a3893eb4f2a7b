"""Backfill of gaps: precommit participation of heights ctop did not observe, from the canonical
commit (`/commit?height=H` once H+1 is committed; small, unlike `/block`, which carries every
transaction). The raw replies go into the same stream as frames, so stream_events stores them the
same at-least-once way."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from common.backoff import Backoff
from common.text import redact_url
from consensus import protocol as p
from consensus.protocol.stream import KIND_COMMIT, KIND_GAP, GapReport, StreamEntry
from consensus.rpc import EndpointError, RPCClient

from .health import HealthChecker
from .writer import StreamWriter

log = logging.getLogger("ctop.subscriber")


class Backfiller(threading.Thread):
    def __init__(
        self,
        chain_name: str,
        health: HealthChecker,
        writer: StreamWriter,
        stop: threading.Event,
        *,
        limit: int,
        timeout: float,
    ) -> None:
        super().__init__(name=f"backfill-{chain_name}", daemon=True)
        self.chain = chain_name
        self.health = health
        self.writer = writer
        self.stop = stop
        self.limit = limit
        self.timeout = timeout
        self.pending: deque[tuple[int, int, str]] = deque()
        self.filled = 0
        self._wake = threading.Event()

    def add(self, start: int, end: int, reason: str = "") -> None:
        self.pending.append((start, end, reason))
        self._wake.set()

    def run(self) -> None:
        clients: dict[str, RPCClient] = {}
        while not self.stop.is_set():
            if not self.pending:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            start, end, reason = self.pending[0]
            first = max(start, end - self.limit + 1)
            if first > start:
                log.warning(
                    "chain=%s gap %d..%d: backfilling only the last %d heights", self.chain, start, end, self.limit
                )
            done = True
            for h in range(first, end + 1):
                try:
                    filled = self._fill(h, clients)
                except Exception:  # a bug must not end the chain's backfill for good
                    log.exception("chain=%s backfill of height %d failed unexpectedly", self.chain, h)
                    self.stop.wait(5.0)
                    filled = False
                if not filled:
                    done = False
                    break
            if self.stop.is_set() or not done:
                continue
            self.pending.popleft()
            report = GapReport(start, end, reason, backfilled=True, backfilled_from=first)
            self.writer.put(StreamEntry(KIND_GAP, self.chain, time.time_ns(), report.encode()), None, self.stop)

    def _fill(self, height: int, clients: dict[str, RPCClient]) -> bool:
        """Fetch the canonical commit of `height`; wait (or retry with backoff) until some endpoint has it."""
        retry, attempts = Backoff(0.5, 10.0, jitter=False), 0
        while not self.stop.is_set():
            candidates = [
                s
                for s in sorted(self.health.snapshot(), key=lambda s: s.priority)
                if s.status and not s.implausible and s.status.latest_height > height
            ]
            for state in candidates:
                client = clients.setdefault(state.url, RPCClient(state.url, timeout=self.timeout))
                try:
                    text = client.commit_text(height)
                    commit = p.decode_commit(text)
                except (EndpointError, p.ProtocolError) as exc:
                    log.info("chain=%s backfill of height %d failed: %s", self.chain, height, exc)
                    continue
                if commit.height != height or not commit.canonical:
                    log.info(
                        "chain=%s backfill of height %d: %s answered with %s commit of height %d",
                        self.chain,
                        height,
                        redact_url(state.url),
                        "a canonical" if commit.canonical else "a non-canonical",
                        commit.height,
                    )
                    continue
                entry = StreamEntry(KIND_COMMIT, self.chain, time.time_ns(), text.encode(), redact_url(state.url))
                self.writer.put(entry, None, self.stop)
                self.filled += 1
                return True
            # A height near the tip is committed within a block or so: ask often for the first
            # seconds, then less and less often (a node that pruned the height never answers).
            attempts += 1
            self.stop.wait(0.25 if attempts <= 40 else retry.next())
        return False
