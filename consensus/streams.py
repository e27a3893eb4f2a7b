"""Names of the Redis keys the pipeline shares, in one place."""

from __future__ import annotations

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


def dead_letter_key(chain_name: str) -> str:
    return f"ctop:deadletters:{chain_name}"


def connect(url: str | None = None, **kw) -> redis.Redis:
    """A client for the pipeline's own loops. They back off and retry by themselves (holding events
    in memory meanwhile), so redis-py's built-in retries are kept to a blip's worth: with its
    defaults (3 retries, backoff up to 10 s) a frozen Redis went unnoticed for 4 timeouts + 7 s."""
    kw.setdefault("socket_connect_timeout", 3)
    kw.setdefault("socket_timeout", 10)
    kw.setdefault("health_check_interval", 30)
    kw.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 1))
    return redis.Redis.from_url(url or settings.REDIS_URL, **kw)
