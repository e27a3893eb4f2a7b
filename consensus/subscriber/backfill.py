"""Backfill of gaps: precommit participation of heights ctop did not observe, from `/block?height=H+1`
(its last_commit is the canonical commit of H). The raw replies go into the same stream as frames,
so stream_events stores them the same at-least-once way."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from consensus import protocol as p
from consensus.protocol.stream import KIND_BLOCK, KIND_GAP, StreamEntry
from consensus.rpc import EndpointError, RPCClient

from .endpoints import HealthChecker
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
                if not self._fill(h, clients):
                    done = False
                    break
            if self.stop.is_set() or not done:
                continue
            self.pending.popleft()
            doc = {"from": start, "to": end, "reason": reason, "backfilled": True, "backfilled_from": first}
            self.writer.put(
                StreamEntry(KIND_GAP, self.chain, time.time_ns(), json.dumps(doc).encode()), None, self.stop
            )
        for client in clients.values():
            client.close()

    def _fill(self, height: int, clients: dict[str, RPCClient]) -> bool:
        """Fetch the commit of `height`; wait (or retry with backoff) until some endpoint has it."""
        delay = 0.5
        while not self.stop.is_set():
            candidates = [
                s
                for s in sorted(self.health.snapshot(), key=lambda s: s.priority)
                if s.status and s.status.latest_height > height
            ]
            for state in candidates:
                client = clients.setdefault(state.url, RPCClient(state.url, timeout=self.timeout))
                try:
                    text = client.block_text(height + 1)
                    block = p.decode_block(text)
                except (EndpointError, p.ProtocolError) as exc:
                    log.info("chain=%s backfill of height %d from %s failed: %s", self.chain, height, state.url, exc)
                    continue
                if block.height != height + 1:
                    continue
                entry = StreamEntry(KIND_BLOCK, self.chain, time.time_ns(), text.encode(), state.url)
                self.writer.put(entry, None, self.stop)
                self.filled += 1
                return True
            self.stop.wait(delay)
            delay = min(delay * 2, 10.0)
        return False
