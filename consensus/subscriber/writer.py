"""The subscriber's hand-off to Redis: one thread appends buffered entries with pipelined XADDs.

Chain workers put entries into a bounded in-memory buffer; the writer drains it in batches. While
Redis is away the buffer holds entries (up to a bound in bytes) and the writer retries with backoff; when
the buffer is full, workers block (they stop reading, and the gap this causes is recorded). An entry
counts as delivered only once Redis has accepted it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import redis

from common.backoff import Backoff
from consensus.protocol.stream import StreamEntry
from consensus.streams import encode_last_height, last_height_key, stream_key

log = logging.getLogger("ctop.subscriber")


@dataclass
class WriterStats:
    delivered: int = 0  # events (frames) and control entries accepted by Redis
    entries: int = 0  # stream entries (a burst of frames is one)
    batches: int = 0
    redis_errors: int = 0
    per_chain: dict[str, int] = field(default_factory=dict)


class StreamWriter(threading.Thread):
    def __init__(
        self,
        client: redis.Redis,
        *,
        maxlen: int,
        buffer_bytes: int = 256 * 2**20,
        batch_size: int = 500,
        stop_after: int | None = None,
    ) -> None:
        super().__init__(name="subscriber-redis-writer", daemon=True)
        self.client = client
        self.maxlen = maxlen
        self.buffer_bytes = buffer_bytes
        self._bytes = 0
        self._chain_bytes: dict[str, int] = {}  # bytes buffered per chain
        self.batch_size = batch_size
        self.stop_after = stop_after  # --max-events: stop once this many are delivered
        self.stats = WriterStats()
        self._buffer: deque[tuple[StreamEntry, int | None, int]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.done = threading.Event()  # set when stop_after is reached
        self.redis_ok = True
        self._top: dict[str, int] = {}

    # --- producers ---

    def put(self, entry: StreamEntry, height: int | None, stop: threading.Event, count: int = 1) -> bool:
        """Queue an entry (carrying `count` events); blocks while the buffer is full, or while this
        entry's chain holds its share of it (the buffer divided by the chains using it, at least a
        sixteenth): one chain's flood blocks that chain's reader, never another's. False if stopping
        before it fit."""
        size = len(entry.payload)
        with self._cond:
            while self._buffer and (
                self._bytes + size > self.buffer_bytes or self._chain_bytes.get(entry.chain, 0) + size > self._share()
            ):
                if stop.is_set() or self._closing:
                    return False
                self._cond.wait(0.2)
            self._buffer.append((entry, height, count))
            self._bytes += size
            self._chain_bytes[entry.chain] = self._chain_bytes.get(entry.chain, 0) + size
            self._cond.notify_all()
        return True

    def _share(self) -> int:
        chains = max(1, len(self._chain_bytes))
        return max(self.buffer_bytes // chains, self.buffer_bytes // 16)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    # --- the writer thread ---

    def close(self, timeout: float = 5.0) -> int:
        """Flush what is buffered (for up to `timeout` seconds); return how many were not delivered."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self.join(timeout)
        return len(self._buffer)

    def run(self) -> None:
        retry = Backoff(0.1, 5.0)  # while Redis is away
        while True:
            with self._cond:
                if not self._buffer:
                    if self._closing:
                        return
                    self._cond.wait(0.05)
                    continue
                batch = [self._buffer[i] for i in range(min(self.batch_size, len(self._buffer)))]
            try:
                self._write(batch)
            except redis.RedisError as exc:
                self.stats.redis_errors += 1
                if self.redis_ok:
                    log.error("redis unavailable (%s); holding %d entries in memory and retrying", exc, self.buffered)
                self.redis_ok = False
                if self._closing and retry.ceiling > 2:
                    return  # shutting down with Redis away: the caller reports what is left
                time.sleep(retry.next())
                continue
            if not self.redis_ok:
                log.warning("redis is back; delivering %d buffered entries", self.buffered)
            self.redis_ok = True
            retry.reset()
            with self._cond:
                for _ in batch:
                    entry = self._buffer.popleft()[0]
                    self._bytes -= len(entry.payload)
                    self._chain_bytes[entry.chain] -= len(entry.payload)
                self._cond.notify_all()
            self.stats.delivered += sum(count for _, _, count in batch)
            self.stats.entries += len(batch)
            self.stats.batches += 1
            if self.stop_after is not None and self.stats.delivered >= self.stop_after:
                self.done.set()

    def _write(self, batch: list[tuple[StreamEntry, int | None, int]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        top: dict[str, int] = {}
        for entry, height, _ in batch:
            # Auto-generated ids: a late vote for an earlier height is always accepted.
            pipe.xadd(stream_key(entry.chain), entry.to_fields(), maxlen=self.maxlen, approximate=True)
            if height is not None and height > top.get(entry.chain, 0):
                top[entry.chain] = height
        now = time.time()
        for chain, height in top.items():
            self._top[chain] = max(self._top.get(chain, 0), height)  # late votes never lower it
            pipe.set(last_height_key(chain), encode_last_height(self._top[chain], now))
        pipe.execute()
        for entry, _, count in batch:
            self.stats.per_chain[entry.chain] = self.stats.per_chain.get(entry.chain, 0) + count
