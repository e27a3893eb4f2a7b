"""Redis Stream entries: how a received frame travels from subscribe_events to stream_events.

An entry keeps the frame exactly as the node sent it (so nothing is lost to a decoding bug, and a
dead letter shows the original bytes), plus who received it and when.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from common.text import one_line

from .envelope import loads
from .errors import BadValue, MissingField
from .fields import INT64_MAX

KIND_FRAME = b"frame"  # one websocket text frame
KIND_FRAMES = b"frames"  # consecutive frames received in one burst (netstrings), one entry for many
KIND_GAP = b"gap"  # heights the subscriber did not observe
KIND_BLOCK = b"block"  # a /block reply fetched by the backfill
KIND_STATUS = b"status"  # connection state of a chain (connected endpoint, failures), also a heartbeat
KIND_COMMIT = b"commit"  # a /commit reply fetched by the backfill (the canonical commit of a gap height)
KIND_REFUSED = b"refused"  # a frame the subscriber refused (JSON: reason, length, the frame cut short)
KINDS = (KIND_FRAME, KIND_FRAMES, KIND_GAP, KIND_BLOCK, KIND_STATUS, KIND_COMMIT, KIND_REFUSED)


@dataclass(frozen=True, slots=True)
class StreamEntry:
    kind: bytes
    chain: str
    received_ns: int  # unix time in nanoseconds when the subscriber received it
    payload: bytes  # the frame / reply, or a small JSON document for gap and status
    endpoint: str = ""  # redacted: it may be shown
    # (floor, ceiling): the heights that were plausible when it was received (consensus.plausible);
    # stream_events refuses decoded events outside it. None: entries from before the guard.
    window: tuple[int, int] | None = None

    def to_fields(self) -> dict[bytes, bytes]:
        fields = {
            b"k": self.kind,
            b"c": self.chain.encode(),
            b"t": str(self.received_ns).encode(),
            b"e": self.endpoint.encode(),
            b"p": self.payload,
        }
        if self.window is not None:
            fields[b"w"] = b"%d:%d" % self.window
        return fields


def decode_entry(fields: dict[bytes, bytes]) -> StreamEntry:
    try:
        kind, chain, received, payload = fields[b"k"], fields[b"c"], fields[b"t"], fields[b"p"]
    except KeyError as exc:
        raise MissingField(f"stream entry field {exc.args[0]!r} is missing") from None
    if kind not in KINDS:
        raise BadValue(f"stream entry kind {kind!r:.40} is unknown")
    window = None
    try:
        received_ns = int(received)
        chain_name = chain.decode()
        endpoint = fields.get(b"e", b"").decode()
        if b"w" in fields:
            floor, ceiling = (int(x) for x in fields[b"w"].split(b":"))
            window = (floor, ceiling)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadValue(f"stream entry header: {exc}") from None
    if received_ns <= 0:
        raise BadValue("stream entry time must be positive")
    return StreamEntry(kind, chain_name, received_ns, payload, endpoint, window)


def encode_frames(frames: list[bytes]) -> bytes:
    """Netstrings (`<length>:<bytes>,`): unambiguous whatever a (malformed) frame contains."""
    return b"".join(b"%d:%s," % (len(f), f) for f in frames)


def decode_frames(payload: bytes) -> list[bytes]:
    out, i, n = [], 0, len(payload)
    while i < n:
        colon = payload.find(b":", i, i + 12)
        if colon < 0 or not payload[i:colon].isdigit():
            raise BadValue(f"frames payload: bad length at byte {i}")
        size = int(payload[i:colon])
        end = colon + 1 + size
        if end >= n + 1 or payload[end : end + 1] != b",":
            raise BadValue(f"frames payload: truncated frame at byte {i}")
        out.append(payload[colon + 1 : end])
        i = end + 1
    return out


def entry_frames(entry: StreamEntry) -> list[bytes]:
    """The websocket frames an entry carries (none for gap, block and status entries)."""
    if entry.kind == KIND_FRAME:
        return [entry.payload]
    if entry.kind == KIND_FRAMES:
        return decode_frames(entry.payload)
    return []


# --- the subscriber's control entries: small JSON documents, typed on both sides ---


def _height(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= INT64_MAX:
        raise BadValue(f"{what}: {value!r:.40} is not a height")
    return value


@dataclass(frozen=True, slots=True)
class GapReport:
    """Heights start..end the subscriber did not observe; backfilled once their commits are in."""

    start: int
    end: int
    reason: str
    backfilled: bool = False
    backfilled_from: int | None = None  # the first height backfilled (the backfill is bounded)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"from": self.start, "to": self.end, "reason": self.reason}
        if self.backfilled:
            doc |= {"backfilled": True, "backfilled_from": self.backfilled_from}
        return json.dumps(doc).encode()

    @classmethod
    def decode(cls, payload: bytes) -> GapReport:
        doc = loads(payload)
        start, end = _height(doc.get("from"), "gap from"), _height(doc.get("to"), "gap to")
        if end < start:
            raise BadValue(f"gap {start}..{end} is not a height range")
        first = doc.get("backfilled_from")
        try:
            first = _height(first, "gap backfilled_from") if first is not None else None
        except BadValue:
            first = None  # informative only: a bad one must not cost the gap (its heights are unknown)
        return cls(start, end, one_line(doc.get("reason", ""), 255), bool(doc.get("backfilled")), first)


@dataclass(frozen=True, slots=True)
class StatusReport:
    """The subscriber's word on a chain's feed; repeated every `interval` seconds as a heartbeat."""

    state: str
    endpoint: str
    height: int | None
    interval: float | None
    reason: str = ""
    since: float | None = None  # unix time since when the state holds, by the subscriber's reckoning

    def encode(self) -> bytes:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, "")}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> StatusReport:
        """A height that is not a height refuses the entry (it would move what ctop believes); any
        other field out of range is dropped, not refused: a status is a heartbeat, and a bad
        interval must not silence the rest of it."""
        doc = loads(payload)
        height = doc.get("height")
        interval = doc.get("interval")
        since = doc.get("since")
        return cls(
            state=one_line(doc.get("state", ""), 32),
            endpoint=one_line(doc.get("endpoint") or "", 255),
            height=_height(height, "status height") if height is not None else None,
            interval=float(interval) if isinstance(interval, int | float) and 0.1 <= interval <= 3600 else None,
            reason=one_line(doc.get("reason") or "", 1000),
            since=float(since) if isinstance(since, int | float) and 1e9 < since < 1e11 else None,
        )

    def since_time(self) -> datetime | None:
        return datetime.fromtimestamp(self.since, tz=UTC) if self.since is not None else None


MAX_LENGTH = 2**31 - 1  # a dead letter's recorded length is an int4


@dataclass(frozen=True, slots=True)
class Refusal:
    """A frame the subscriber would not pass on (cut to the dead-letter bound), with why and its length."""

    reason: str
    length: int
    frame: str

    def encode(self) -> bytes:
        return json.dumps({"reason": self.reason, "length": self.length, "frame": self.frame}).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Refusal:
        doc = loads(payload)
        length = doc.get("length")
        frame = str(doc.get("frame", ""))
        if isinstance(length, bool) or not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
            length = len(frame)  # the column is an int4: a forged length must not refuse the batch
        return cls(str(doc.get("reason", "")), length, frame)
