"""Stage 1: consensus events from many chains' websockets into Redis Streams."""

from .options import SUBSCRIPTIONS, Options
from .runner import ChainTarget, RunReport, SubscribeRunner
from .worker import ChainWorker
from .writer import StreamWriter

__all__ = ["SUBSCRIPTIONS", "ChainTarget", "ChainWorker", "Options", "RunReport", "StreamWriter", "SubscribeRunner"]
