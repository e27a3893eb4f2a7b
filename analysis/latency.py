"""Vote latency and proposals, measured at the watched node (README "Vote latency").

For every round of a judged height, and every vote ctop saw:

- **arrival delay**: when the watched node relayed the vote to ctop, minus when the round's
  proposal was complete there (CompleteProposal); where no proposal arrived, minus the round's
  start (NewRound), and the round says so;
- **quorum margin**: whether the vote came after the round had gathered +2/3 of the power for that
  vote type (a vote after quorum did not help liveness).

Both are measured by ctop's clock on frames from one endpoint, so they include the network distance
from that node; the round records which endpoint (the vantage point), and figures from different
vantage points are never mixed silently.

Kept in the history tier (analysis.history), 2 bytes a vote:

- `delays`: for each kept round k and validator i of the voter set (ascending ids, n of them), two
  little-endian int16 at index (k * n + i) * 2 + type (0 prevote, 1 precommit): the delay in 10 ms
  units, clamped to +-327 s; NO_DELAY where ctop saw no vote;
- `round_info`: for each kept round, ROUND_INFO: the proposer's validator id (0: not known), the
  prevote and precommit quorum delays (NO_DELAY: no quorum seen) and flags (PROPOSED: the proposal
  arrived, and delays count from it; COMMITTED: the round committed its block).
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from datetime import datetime

UNIT_MS = 10
NO_DELAY = -32768
MAX_UNITS = 32767
ROUND_INFO = struct.Struct("<ihhBx")  # proposer id, prevote quorum, precommit quorum, flags (10 bytes)
PROPOSED = 1
COMMITTED = 2
PREVOTE, PRECOMMIT = 0, 1


def units(delta_seconds: float) -> int:
    return max(-MAX_UNITS, min(MAX_UNITS, round(delta_seconds * 1000 / UNIT_MS)))


@dataclass
class RoundTiming:
    """One round, as the judge measured it."""

    proposer: int | None
    flags: int
    quorum: tuple[int, int]  # prevote, precommit quorum delays (units; NO_DELAY: none)


@dataclass
class Timing:
    """A height's timing: per validator, per kept round, (prevote delay, precommit delay) in units."""

    rounds: dict[int, RoundTiming]
    delays: dict[int, list[tuple[int, int]]]
    vantage: str = ""


def measure(
    first: int,
    rounds: int,
    members: list[tuple[int, int]],
    arrivals: dict[tuple[int, int, int], datetime],
    round_times: dict[int, tuple[datetime, datetime | None]],
    proposers: dict[int, int | None],
    committed: set[int],
) -> tuple[dict[int, RoundTiming], dict[int, list[tuple[int, int]]]]:
    """Delays and quorum margins of rounds first..rounds-1.

    members: (validator id, power) of the active set; arrivals: (round, type 1/2, validator) -> when
    ctop received the vote; round_times: round -> (NewRound received, CompleteProposal received)."""
    total = sum(power for _, power in members)
    power_of = dict(members)
    info: dict[int, RoundTiming] = {}
    delays: dict[int, list[tuple[int, int]]] = {vid: [] for vid, _ in members}
    by_step: dict[tuple[int, int], list[tuple[datetime, int]]] = {}
    for (vr, vt, vid), when in arrivals.items():
        if vid in power_of:
            by_step.setdefault((vr, vt), []).append((when, vid))
    for r in range(first, rounds):
        started, proposal = round_times.get(r, (None, None))
        reference = proposal or started
        flags = (PROPOSED if proposal else 0) | (COMMITTED if r in committed else 0)
        quorum = [NO_DELAY, NO_DELAY]
        for t, vote_type in ((PREVOTE, 1), (PRECOMMIT, 2)):
            gathered = 0
            for when, vid in sorted(by_step.get((r, vote_type), ())):
                gathered += power_of[vid]
                if gathered * 3 > total * 2:
                    if reference is not None:
                        quorum[t] = units((when - reference).total_seconds())
                    break
        info[r] = RoundTiming(proposers.get(r), flags, (quorum[0], quorum[1]))
        for vid, _ in members:
            pair = []
            for vote_type in (1, 2):
                when = arrivals.get((r, vote_type, vid))
                known = when is not None and reference is not None
                pair.append(units((when - reference).total_seconds()) if known else NO_DELAY)
            delays[vid].append((pair[0], pair[1]))
    return info, delays


def pack_delays(delays: dict[int, list[tuple[int, int]]], voters: list[int], rounds: int) -> bytes:
    n = len(voters)
    out = array("h", [NO_DELAY]) * (rounds * n * 2)
    for i, vid in enumerate(voters):
        for k, (pv, pc) in enumerate(delays.get(vid, [])[:rounds]):
            out[(k * n + i) * 2] = pv
            out[(k * n + i) * 2 + 1] = pc
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def unpack_delays(data: bytes) -> array:
    out = array("h")
    out.frombytes(data[: len(data) - len(data) % 2])
    if sys.byteorder == "big":
        out.byteswap()
    return out


def pack_rounds(rounds: list[RoundTiming]) -> bytes:
    return b"".join(ROUND_INFO.pack(r.proposer or 0, r.quorum[0], r.quorum[1], r.flags) for r in rounds)


def unpack_rounds(data: bytes) -> list[RoundTiming]:
    return [
        RoundTiming(proposer or None, flags, (pv, pc))
        for proposer, pv, pc, flags in ROUND_INFO.iter_unpack(data[: len(data) - len(data) % ROUND_INFO.size])
    ]
