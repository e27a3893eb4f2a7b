"""Names of the Redis keys the pipeline shares, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from django.conf import settings
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

GROUP = "ctop"  # the consumer group of stream_events


def stream_key(chain_name: str) -> str:
    return f"{settings.CTOP['STREAM_PREFIX']}{chain_name}"


def last_height_key(chain_name: str) -> str:
    """The highest height whose events the subscriber has delivered to the stream (gap detection
    across subscriber restarts)."""
    return f"ctop:subscriber:last_height:{chain_name}"


def encode_last_height(height: int, at: float) -> bytes:
    """The subscriber's running record: the height and the unix time it was raised (the time lets
    the next start tell how far the chain may plausibly have moved since)."""
    return b"%d:%d" % (height, int(at))


def decode_last_height(raw: bytes | str | None) -> tuple[int, float | None] | None:
    """(height, unix time or None for a value written before times were kept); None when absent or
    unreadable (an unreadable value is as good as none: the next frames write a new one)."""
    if not raw:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    head, _, tail = text.partition(":")
    if not head.isascii() or not head.isdigit() or len(head) > 19 or (tail and not tail.isdigit()):
        return None
    return int(head), float(tail) if tail else None


def connect(url: str | None = None, **kw) -> redis.Redis:
    """A client for the pipeline's own loops. They back off and retry by themselves (holding events
    in memory meanwhile), so redis-py's built-in retries are kept to a blip's worth: with its
    defaults (3 retries, backoff up to 10 s) a frozen Redis went unnoticed for 4 timeouts + 7 s."""
    kw.setdefault("socket_connect_timeout", 3)
    kw.setdefault("socket_timeout", 10)
    kw.setdefault("health_check_interval", 30)
    kw.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 1))
    return redis.Redis.from_url(url or settings.REDIS_URL, **kw)


@dataclass(frozen=True)
class GroupInfo:
    """ctop's consumer group on one chain's stream, as Redis reports it."""

    unread: int | None  # entries not yet delivered to the group (None: Redis cannot tell)
    pending: int  # delivered, not yet acknowledged
    last_delivered: bytes | str | None


def group_info(client: redis.Redis, key: str) -> GroupInfo | None:
    """The group's view of the stream at `key`; None when the stream or the group does not exist
    yet. Other Redis errors propagate."""
    try:
        groups = client.xinfo_groups(key)
    except redis.ResponseError:
        return None  # no stream yet
    for g in groups:
        if g.get("name") in (GROUP, GROUP.encode()):
            lag = g.get("lag")
            return GroupInfo(
                unread=int(lag) if lag is not None else None,
                pending=int(g.get("pending") or 0),
                last_delivered=g.get("last-delivered-id"),
            )
    return None
