"""The simulated chain's slashing module: each validator's misses over the last `window` blocks,
jailing past the allowance, and unjailing, so the simulator's REST API tells the same story as
its votes (a validator offline long enough is jailed; its jail-risk counter climbs before that).

As in the Cosmos SDK (x/slashing BeginBlocker): a block's commit without the validator's signature
is a miss; past `window - round(window x min_signed)` misses it is jailed and its counter starts
over. Unlike a real chain, the simulator keeps a jailed validator in its consensus set (its sets
are fixed by the scenario); it is unjailed once the jail time has passed and it signs again, as
its operator's unjail transaction would.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from typing import Protocol

from consensus.protocol import FLAG_ABSENT

from .scenario import Slashing


class Committed(Protocol):
    """What a committed block tells the slashing module (chain.BlockRecord; not imported: the
    chain imports this module)."""

    vals: tuple
    flags: bytes
    time: datetime


class SlashingBook:
    def __init__(self, rule: Slashing) -> None:
        self.rule = rule
        self.window = max(1, rule.window)
        self.allowed = max(0, self.window - round(self.window * rule.min_signed))
        self.misses: dict[int, deque[bool]] = {}  # genesis index -> the last `window` blocks, True = missed
        self.jailed_until: dict[int, datetime] = {}  # genesis index -> end of its jail time (while jailed)
        self.last_jailed_until: dict[int, datetime] = {}  # kept after unjailing, as the SDK's signing info does

    def record(self, block: Committed) -> None:
        """Count one committed block (called in height order)."""
        for v, flag in zip(block.vals, block.flags, strict=True):
            i = v.genesis_index
            absent = flag == FLAG_ABSENT
            if i in self.jailed_until:
                if not absent and block.time >= self.jailed_until[i]:
                    del self.jailed_until[i]  # unjailed; its window starts empty
                continue
            window = self.misses.setdefault(i, deque(maxlen=self.window))
            window.append(absent)
            if sum(window) > self.allowed:
                until = block.time + timedelta(seconds=self.rule.jail_seconds)
                self.jailed_until[i] = self.last_jailed_until[i] = until
                window.clear()

    def counter(self, genesis_index: int) -> int:
        return sum(self.misses.get(genesis_index, ()))

    def jailed(self, genesis_index: int) -> bool:
        return genesis_index in self.jailed_until
