"""What one chain's worker hands to the Redis writer: frames in bursts, and control entries (gaps,
statuses, refused frames) in their place between them.

Frames go to Redis in bursts: one stream entry per up to BATCH_FRAMES frames or BATCH_SECONDS,
which takes Redis and the per-entry work out of the hot path (one XADD for many events). Every
entry carries the plausible-height window it was received under (consensus.plausible), which
stream_events enforces on what it decodes.
"""

from __future__ import annotations

import threading
import time

from django.conf import settings

from consensus.plausible import Window
from consensus.protocol.stream import (
    KIND_FRAMES,
    KIND_GAP,
    KIND_REFUSED,
    KIND_STATUS,
    GapReport,
    Refusal,
    StatusReport,
    StreamEntry,
    encode_frames,
)

from .writer import StreamWriter


class Outbox:
    BATCH_FRAMES = 256
    BATCH_SECONDS = 0.02

    def __init__(self, chain: str, writer: StreamWriter, stop: threading.Event) -> None:
        self.chain = chain
        self.writer = writer
        self.stop = stop
        self.endpoint = ""  # the redacted URL of the endpoint the frames come from
        self.window: Window | None = None
        self._batch: list[bytes] = []
        self._height = 0  # the highest height in the open batch
        self.started = 0.0  # monotonic time the open batch began
        self._ns = 0

    @property
    def open(self) -> bool:
        return bool(self._batch)

    def frame(self, text: str, height: int | None) -> None:
        if not self._batch:
            self.started = time.monotonic()
            self._ns = time.time_ns()
        self._batch.append(text.encode())
        if height is not None and height > self._height:
            self._height = height
        if len(self._batch) >= self.BATCH_FRAMES:
            self.flush()

    def flush(self) -> int | None:
        """Hand the open batch to the writer; returns the highest height it held (None if none)."""
        if not self._batch:
            return None
        entry = StreamEntry(
            kind=KIND_FRAMES,
            chain=self.chain,
            received_ns=self._ns,
            payload=encode_frames(self._batch),
            endpoint=self.endpoint,
            window=(self.window.floor, self.window.ceiling) if self.window else None,
        )
        height, count = self._height or None, len(self._batch)
        self._batch, self._height = [], 0
        self.writer.put(entry, height, self.stop, count=count)
        return height

    def control(self, kind: bytes, report: GapReport | StatusReport | Refusal, height: int | None = None) -> None:
        """A control entry, after the frames received before it."""
        self.flush()
        entry = StreamEntry(
            kind=kind,
            chain=self.chain,
            received_ns=time.time_ns(),
            payload=report.encode(),
            endpoint=self.endpoint,
            window=(self.window.floor, self.window.ceiling) if self.window else None,
        )
        self.writer.put(entry, height, self.stop)

    def status(
        self, state: str, height: int | None, interval: float, *, reason: str = "", since: float | None = None
    ) -> None:
        self.control(KIND_STATUS, StatusReport(state, self.endpoint, height, interval, reason, since))

    def gap(self, start: int, end: int, reason: str) -> None:
        self.control(KIND_GAP, GapReport(start, end, reason))

    def refused(self, text: str, reason: str) -> None:
        """A frame ctop will not store (a height outside the plausible window): it goes to the dead
        letters, cut to their size bound, with the reason and its full length."""
        limit = settings.CTOP["DEAD_LETTER_MAX_BYTES"]
        self.control(KIND_REFUSED, Refusal(reason, len(text), text[:limit]))
