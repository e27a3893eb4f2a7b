"""What one chain's subscription is configured with, what it counts, and how a session ends."""

from __future__ import annotations

from dataclasses import dataclass, field

# What ctop subscribes to: 4 of the node's 5 allowed subscriptions per connection.
SUBSCRIPTIONS = ("NewRound", "NewRoundStep", "Vote", "CompleteProposal")


@dataclass
class Options:
    silence_timeout: float = 30.0  # no frame for this long while the chain advances: reconnect
    health_interval: float = 10.0  # /status of every endpoint; also the heartbeat of the chain's status
    http_timeout: float = 5.0  # total deadline of one HTTP call, and of the websocket handshake
    max_lag_blocks: int = 5
    stale_after: float = 60.0
    backoff_base: float = 0.5  # a failed endpoint's penalty: this, doubling per failure in a row...
    backoff_max: float = 30.0  # ...up to this (with jitter)
    backfill_limit: int = 1000  # most recent heights of a gap to backfill
    max_frame_bytes: int = 0  # 0: settings.CTOP["WS_MAX_FRAME_BYTES"]
    message_deadline: float = 10.0  # a websocket message must arrive whole within this long
    plausible_heights: int = 0  # 0: settings.CTOP["PLAUSIBLE_HEIGHTS"]
    max_blocks_per_second: float = 0.0  # 0: settings.CTOP["MAX_BLOCKS_PER_SECOND"]


@dataclass
class Counters:
    events: int = 0
    other_frames: int = 0
    malformed: int = 0
    refused: int = 0
    reconnects: int = 0
    failovers: int = 0
    gaps: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)  # events by type (Vote, NewRound, ...)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SessionEnd(Exception):
    """Why a connection ended (logged; the worker reconnects)."""

    def __init__(self, reason: str, got_events: bool = False, *, switch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.got_events = got_events
        self.switch = switch  # a deliberate failover/failback: reconnect at once, no penalty
