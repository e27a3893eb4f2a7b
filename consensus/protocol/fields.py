"""Readers for CometBFT's JSON field encodings. Each raises BadValue/MissingField with the field's
path, so an operator can see exactly what was wrong with a frame."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from .errors import BadValue, MissingField

INT64_MAX = 2**63 - 1
# A round past this would need years of ever-growing timeouts; such a value is corruption.
MAX_ROUND = 32767
# CometBFT caps a validator set at 10,000 (MaxVotesCount).
MAX_VALIDATORS = 10_000

_HEX = re.compile(r"^[0-9A-Fa-f]*$")
_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def obj(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise BadValue(f"{path}: expected an object, got {type(value).__name__}")
    return value


def get(d: dict, key: str, path: str) -> Any:
    try:
        return d[key]
    except KeyError:
        raise MissingField(f"{path}.{key} is missing") from None


def integer(value: Any, path: str, *, lo: int, hi: int) -> int:
    """int64 fields come as strings, int32 as numbers; old nodes sent int32 as strings too."""
    if isinstance(value, bool):
        raise BadValue(f"{path}: expected an integer, got a boolean")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit() and len(value) <= 20:
        n = int(value)
    else:
        raise BadValue(f"{path}: expected an integer, got {value!r:.40}")
    if not lo <= n <= hi:
        raise BadValue(f"{path}: {n} is out of range [{lo}, {hi}]")
    return n


def height(value: Any, path: str, *, allow_zero: bool = False) -> int:
    return integer(value, path, lo=0 if allow_zero else 1, hi=INT64_MAX)


def round_(value: Any, path: str) -> int:
    return integer(value, path, lo=0, hi=MAX_ROUND)


def index(value: Any, path: str) -> int:
    return integer(value, path, lo=0, hi=MAX_VALIDATORS - 1)


def string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise BadValue(f"{path}: expected a string, got {type(value).__name__}")
    return value


def hex_bytes(value: Any, path: str, *, size: int | None = None, allow_empty: bool = True) -> bytes | None:
    """Uppercase hex (hashes, addresses). Empty means "none" (e.g. the nil vote's block hash)."""
    if value is None and allow_empty:
        return None
    text = string(value, path)
    if text == "":
        if allow_empty:
            return None
        raise BadValue(f"{path}: empty")
    if not _HEX.match(text) or len(text) % 2:
        raise BadValue(f"{path}: not hex: {text!r:.40}")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise BadValue(f"{path}: expected {size} bytes, got {len(raw)}")
    return raw


def address(value: Any, path: str, *, allow_empty: bool = False) -> str:
    raw = hex_bytes(value, path, size=20, allow_empty=allow_empty)
    return raw.hex().upper() if raw else ""


def b64(value: Any, path: str) -> bytes | None:
    if value is None or value == "":
        return None
    text = string(value, path)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadValue(f"{path}: not base64: {text!r:.40}") from None


ZERO_TIME = "0001-01-01T00:00:00Z"


def timestamp(value: Any, path: str, *, allow_zero: bool = False) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go's time.Time). Nanoseconds are cut to microseconds."""
    text = string(value, path)
    if text == ZERO_TIME and allow_zero:
        return None
    m = _TIME.match(text)
    if not m:
        raise BadValue(f"{path}: not an RFC 3339 time: {text!r:.40}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micro = int((frac or "0").ljust(9, "0")[:6])
    try:
        dt = datetime(int(year), int(month), int(day), int(hh), int(mm), int(ss), micro, tzinfo=UTC)
    except ValueError as exc:
        raise BadValue(f"{path}: {exc}: {text!r:.40}") from None
    if zone != "Z":
        from datetime import timedelta

        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        try:
            dt = dt - sign * offset
        except OverflowError:
            raise BadValue(f"{path}: out of range: {text!r:.40}") from None
    return dt


def format_time(dt: datetime, nanos: int | None = None) -> str:
    """Go's RFC3339Nano: fraction with trailing zeros removed, none at all when zero."""
    dt = dt.astimezone(UTC)
    ns = nanos if nanos is not None else dt.microsecond * 1000
    frac = f"{ns:09d}".rstrip("0")
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def validator_entry(item: Any, path: str) -> tuple[str, str, str, int]:
    """address, pub key type, pub key (base64), voting power: how /validators and
    ValidatorSetUpdates both describe a validator."""
    item = obj(item, path)
    pub = obj(get(item, "pub_key", path), f"{path}.pub_key")
    return (
        address(get(item, "address", path), f"{path}.address"),
        string(pub.get("type", ""), f"{path}.pub_key.type"),
        string(pub.get("value", ""), f"{path}.pub_key.value"),
        integer(get(item, "voting_power", path), f"{path}.voting_power", lo=0, hi=INT64_MAX),
    )
