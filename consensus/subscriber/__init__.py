"""Stage 1: consensus events from many chains' websockets into Redis Streams."""

from .runner import ChainTarget, RunReport, SubscribeRunner
from .worker import SUBSCRIPTIONS, ChainWorker, Options
from .writer import StreamWriter

__all__ = ["SUBSCRIPTIONS", "ChainTarget", "ChainWorker", "Options", "RunReport", "StreamWriter", "SubscribeRunner"]
