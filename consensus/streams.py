"""Names of the Redis keys the pipeline shares, in one place."""

from __future__ import annotations

import redis
from django.conf import settings

GROUP = "ctop"  # the consumer group of stream_events


def stream_key(chain_name: str) -> str:
    return f"{settings.CTOP['STREAM_PREFIX']}{chain_name}"


def last_height_key(chain_name: str) -> str:
    """The highest height whose events the subscriber has delivered to the stream (gap detection
    across subscriber restarts)."""
    return f"ctop:subscriber:last_height:{chain_name}"


def dead_letter_key(chain_name: str) -> str:
    return f"ctop:deadletters:{chain_name}"


def connect(url: str | None = None, **kw) -> redis.Redis:
    kw.setdefault("socket_connect_timeout", 3)
    kw.setdefault("socket_timeout", 10)
    kw.setdefault("health_check_interval", 30)
    return redis.Redis.from_url(url or settings.REDIS_URL, **kw)
