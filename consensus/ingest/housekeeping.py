"""What keeps the hand-off's storage bounded whatever an endpoint sends: acknowledged entries are
trimmed from the streams, and dead letters are kept at a bounded rate per chain."""

from __future__ import annotations

import logging
import time

import redis

from consensus.streams import GROUP, group_info

from .decode import DeadRow

log = logging.getLogger("ctop.stream")


def trim_acknowledged(client: redis.Redis, key: str) -> None:
    """Drop the entries every consumer has acknowledged (the group's only consumers are ctop's): the
    stream then holds the backlog, not days of history up to MAXLEN."""
    group = group_info(client, key)
    if group is None:
        return  # no stream or no group yet
    keep_from = group.last_delivered
    summary = client.xpending(key, GROUP)
    if summary and summary.get("pending"):
        keep_from = summary["min"]  # the oldest entry someone still holds
    if keep_from and keep_from not in (b"0-0", "0-0"):
        client.xtrim(key, minid=keep_from, approximate=True)


class DeadLetterBudget:
    """At most `per_minute` dead letters per chain are stored; the rest are counted and said once a
    minute (a node sending nothing but garbage must not fill the table at line rate)."""

    def __init__(self, per_minute: int = 120, clock=time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._window: dict[int | None, tuple[float, int, int]] = {}  # chain -> (start, kept, dropped)

    def admit(self, rows: list[DeadRow]) -> list[DeadRow]:
        now = self.clock()
        kept: list[DeadRow] = []
        for row in rows:
            start, n, dropped = self._window.get(row.chain_id, (now, 0, 0))
            if now - start >= 60:
                if dropped:
                    log.warning(
                        "chain id %s: %d dead letters not stored in the last minute (over %d a minute)",
                        row.chain_id,
                        dropped,
                        self.per_minute,
                    )
                start, n, dropped = now, 0, 0
            if n < self.per_minute:
                kept.append(row)
                n += 1
            else:
                dropped += 1
            self._window[row.chain_id] = (start, n, dropped)
        return kept
