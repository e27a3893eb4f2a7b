"""Stage 2: Redis Streams into PostgreSQL, at least once and idempotent."""

from .consumer import StreamConsumer, default_consumer_name
from .publish import LivePublisher, group_name

__all__ = ["LivePublisher", "StreamConsumer", "default_consumer_name", "group_name"]
