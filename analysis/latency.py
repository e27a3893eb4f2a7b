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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

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


# --- reading: per-validator figures over the latest heights ---


@dataclass
class ValidatorLatency:
    validator_id: int
    votes: int  # votes timed (rounds whose proposal arrived)
    p50_ms: float
    p95_ms: float
    after_quorum: float  # share of its votes that came after +2/3 of the power had voted


@dataclass
class ChainLatency:
    heights: int  # heights read
    vantage: int | None  # the endpoint (id) the figures were measured at
    other_vantages: int  # heights measured elsewhere, left out (figures from two places are not mixed)
    validators: dict[int, ValidatorLatency]

    def median(self, attr: str) -> float | None:
        values = sorted(getattr(v, attr) for v in self.validators.values())
        return values[len(values) // 2] if values else None


def percentile(sorted_values: list[int], share: float) -> int:
    """Nearest rank: the smallest value with at least `share` of the values at or below it."""
    rank = max(1, -(-len(sorted_values) * share // 1))
    return sorted_values[int(rank) - 1]


def timed_votes(values: array, rounds: list[RoundTiming], n: int, i: int) -> Iterator[tuple[RoundTiming, int, int]]:
    """Validator i's timed votes in one history row (`values` its unpacked delays, `rounds` its round
    info, n the voter set's size), as (round, vote type, delay in units). Rounds without a proposal
    are left out (their delays count from the round's start: not comparable), and so are votes ctop
    did not see: chain_latency's rule. A row holding one validator's delays only (analysis.timeline)
    is n=1, i=0."""
    for k, rnd in enumerate(rounds):
        if not rnd.flags & PROPOSED:
            continue
        base = (k * n + i) * 2
        for t in (PREVOTE, PRECOMMIT):
            d = values[base + t] if base + t < len(values) else NO_DELAY
            if d != NO_DELAY:
                yield rnd, t, d


def turn_mark(rnd: RoundTiming) -> str:
    """A proposer's turn: "C" committed, "P" proposed but the round was lost, "-" no proposal."""
    return "C" if rnd.flags & COMMITTED else "P" if rnd.flags & PROPOSED else "-"


def chain_latency(chain_id: int, heights: int, *, below: int | None = None) -> ChainLatency:
    """Every validator's arrival delays over the chain's latest `heights` judged heights (below
    `below` if given), from the history tier: one walk back along its key. Rounds without a proposal
    are left out (their delays count from the round's start: not comparable)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT h.voters_id, h.delays, h.round_info, h.vantage FROM analysis_heighthistory h"
            " WHERE h.chain_id = %s AND h.height < %s AND h.delays IS NOT NULL ORDER BY h.height DESC LIMIT %s",
            [chain_id, below if below is not None else 2**63 - 1, heights],
        )
        rows = cur.fetchall()
        set_ids = sorted({r[0] for r in rows})
        cur.execute("SELECT id, validators FROM analysis_voterset WHERE id = ANY(%s)", [set_ids])
        sets = dict(cur.fetchall())
    counts: dict[int | None, int] = {}
    for row in rows:
        counts[row[3]] = counts.get(row[3], 0) + 1
    vantage = max(counts, key=lambda k: counts[k]) if counts else None
    delays: dict[int, list[int]] = {}
    late: dict[int, int] = {}
    for set_id, packed, info, where in rows:
        if where != vantage:
            continue
        voters = sets[set_id]
        n = len(voters)
        values = unpack_delays(bytes(packed))
        # timed_votes' rule, inlined: a generator per validator costs 70% more over 10,000 heights.
        for k, rnd in enumerate(unpack_rounds(bytes(info))):
            if not rnd.flags & PROPOSED:
                continue
            base = k * n * 2
            for i, vid in enumerate(voters):
                for t in (PREVOTE, PRECOMMIT):
                    d = values[base + 2 * i + t] if base + 2 * i + t < len(values) else NO_DELAY
                    if d == NO_DELAY:
                        continue
                    delays.setdefault(vid, []).append(d)
                    if rnd.quorum[t] != NO_DELAY and d > rnd.quorum[t]:
                        late[vid] = late.get(vid, 0) + 1
    out = {}
    for vid, values in delays.items():
        values.sort()
        out[vid] = ValidatorLatency(
            vid,
            len(values),
            percentile(values, 0.5) * UNIT_MS,
            percentile(values, 0.95) * UNIT_MS,
            late.get(vid, 0) / len(values),
        )
    return ChainLatency(len(rows), vantage, len(rows) - counts.get(vantage, 0), out)


@dataclass
class ProposerRecord:
    validator_id: int
    turns: int = 0  # rounds it was the proposer of
    proposed: int = 0  # rounds whose proposal arrived
    committed: int = 0  # rounds that committed its block
    recent: str = ""  # its turns, newest first: "C" committed, "P" proposed but lost, "-" no proposal

    @property
    def lost(self) -> int:
        return self.turns - self.committed


def proposers(chain_id: int, heights: int) -> dict[int, ProposerRecord]:
    """Every proposer's turns over the chain's latest `heights` judged heights, newest first."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT round_info FROM analysis_heighthistory WHERE chain_id = %s AND round_info IS NOT NULL"
            " ORDER BY height DESC LIMIT %s",
            [chain_id, heights],
        )
        rows = cur.fetchall()
    out: dict[int, ProposerRecord] = {}
    for (info,) in rows:
        for rnd in reversed(unpack_rounds(bytes(info))):  # newest round first
            if rnd.proposer is None:
                continue
            rec = out.setdefault(rnd.proposer, ProposerRecord(rnd.proposer))
            rec.turns += 1
            rec.proposed += bool(rnd.flags & PROPOSED)
            rec.committed += bool(rnd.flags & COMMITTED)
            rec.recent += turn_mark(rnd)
    return out


def clock_skews(chain_id: int, heights: int) -> dict[int, tuple[float, int]]:
    """Per validator, the median of its votes' own timestamp minus when ctop received them, in
    ms, over the chain's latest `heights` (from the raw votes: the hot tier, kept days, not years),
    and how many votes. Diagnostic only: it mixes the validator's clock error with the network."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT validator_id, percentile_disc(0.5) WITHIN GROUP (ORDER BY skew), count(*) FROM consensus_vote"
            " WHERE chain_id = %s AND height > (SELECT coalesce(max(height), 0) FROM consensus_round"
            " WHERE chain_id = %s) - %s GROUP BY validator_id",
            [chain_id, chain_id, heights],
        )
        return {vid: (median * UNIT_MS, n) for vid, median, n in cur.fetchall()}
