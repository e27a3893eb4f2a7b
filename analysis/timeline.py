"""One validator's heights over a time range, read from the history tier for the page's charts.

Bounded whatever the range: a year of 6 s heights is ~5 million rows a chain, so at most MAX_ROWS
heights are read, every k-th of the range's heights (a stride over the height range, each one a
probe of the (chain, height) primary key), every height when the range holds fewer. Of each row only
this validator's bytes leave the database (its letter byte and its two delays per round, cut out by
substring at its position in the row's voter set), with the round info (10 bytes a round).
The time range becomes a height range by a binary search on the key (judged_at is not indexed, and
grows with the height: heights are judged in order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from validators.models import SetMembership

from . import latency
from .charts import HeightPoint
from .history import LETTERS, voter_positions
from .models import MAX_VERDICT_ROUNDS, MISSED

MAX_ROWS = 3000

# Per sampled height, one probe of the primary key (LATERAL ... LIMIT 1: never a scan of the chain's
# whole index), then its time, vantage point, this validator's letter bytes and delays (one byte
# and 4 bytes per round, at its position `pos` in a set of `n`) and the round info. The rounds are
# counted over a constant series (at most MAX_VERDICT_ROUNDS are kept) so the planner costs them
# right, and does not JIT-compile a 30 ms query.
SAMPLE = f"""
SELECT h.height, h.judged_at, h.vantage,
  (SELECT string_agg(substring(h.letters FROM k * s.n + s.pos + 1 FOR 1), ''::bytea ORDER BY k)
     FROM generate_series(0, {MAX_VERDICT_ROUNDS - 1}) AS k WHERE k * s.n < length(h.letters)),
  (SELECT string_agg(substring(h.delays FROM (k * s.n + s.pos) * 4 + 1 FOR 4), ''::bytea ORDER BY k)
     FROM generate_series(0, {MAX_VERDICT_ROUNDS - 1}) AS k WHERE k * s.n * 4 < length(h.delays)),
  h.round_info
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint, %(stride)s::bigint) AS g(height)
CROSS JOIN LATERAL (
  SELECT * FROM analysis_heighthistory WHERE chain_id = %(chain)s AND height = g.height LIMIT 1
) AS h
JOIN unnest(%(sets)s::int[], %(pos)s::int[], %(n)s::int[]) AS s(sid, pos, n) ON s.sid = h.voters_id
ORDER BY h.height
"""  # noqa: S608 - a constant of ours, no input


@dataclass
class Timeline:
    points: list[HeightPoint] = field(default_factory=list)
    stride: int = 1  # every stride-th height of [first, last] was read
    first: int | None = None  # the height range read
    last: int | None = None
    rows: int = 0  # rows the database returned
    vantage: int | None = None  # the endpoint the delays were measured at (the most rows')
    other_vantages: int = 0  # rows timed elsewhere: their delays are left out, never mixed


def _probe(cur, chain_id: int, height: int, descending: bool = False) -> tuple[int, datetime] | None:
    """The first history row at or after `height` (at or before, descending)."""
    op, order = ("<=", "DESC") if descending else (">=", "")
    cur.execute(
        f"SELECT height, judged_at FROM analysis_heighthistory WHERE chain_id = %s AND height {op} %s"  # noqa: S608
        f" ORDER BY height {order} LIMIT 1",
        [chain_id, height],
    )
    return cur.fetchone()


def first_height_since(cur, chain_id: int, lo: int, hi: int, since: datetime) -> int:
    """The lowest height in [lo, hi] judged at or after `since` (hi + 1 if none): ~log2(hi - lo)
    probes of the key."""
    a, b = lo, hi + 1
    while a < b:
        mid = (a + b) // 2
        row = _probe(cur, chain_id, mid)
        if row is None or row[0] > hi or row[1] >= since:
            b = mid
        else:
            a = row[0] + 1
    return a


def read(chain_id: int, validator_id: int, since: datetime | None = None, max_rows: int = MAX_ROWS) -> Timeline:
    """The validator's heights judged since `since` (its whole span in the history if None)."""
    with connection.cursor() as cur:
        sets = voter_positions(cur, chain_id, validator_id)
        bottom, top = _probe(cur, chain_id, 0), _probe(cur, chain_id, 2**63 - 1, descending=True)
        if not sets or bottom is None or top is None:
            return Timeline()
        lo, hi = bottom[0], top[0]
        # Its span, from the set history where recorded (without it, the chain's whole history).
        ranges = list(SetMembership.objects.filter(validator_id=validator_id).values_list("heights", flat=True))
        if ranges:
            lo = max(lo, min(r.lower for r in ranges))
            if all(r.upper is not None for r in ranges):
                hi = min(hi, max(r.upper for r in ranges) - 1)
        if since is not None:
            lo = first_height_since(cur, chain_id, lo, hi, since)
        if lo > hi:
            return Timeline()
        stride = max(1, -(-(hi - lo + 1) // max_rows))
        rows = sample(cur, chain_id, sets, lo, hi, stride)
    return _decode(rows, validator_id, stride, lo, hi)


def sample(cur, chain_id: int, sets: list[tuple[int, int, int]], lo: int, hi: int, stride: int) -> list[tuple]:
    """Rows of heights lo, lo + stride, ... <= hi whose voter set is one of `sets` ((set id, the
    validator's position, the set's size)): (height, judged_at, vantage, its letter bytes, its
    delays, round info)."""
    params = {"lo": lo, "hi": hi, "stride": stride, "chain": chain_id}
    params.update(sets=[s[0] for s in sets], pos=[s[1] for s in sets], n=[s[2] for s in sets])
    cur.execute(SAMPLE, params)
    return cur.fetchall()


def _decode(rows: list[tuple], validator_id: int, stride: int, lo: int, hi: int) -> Timeline:
    # The delays of one vantage point only, the one most rows were timed at (as latency.chain_latency).
    counts: dict[int | None, int] = {}
    for row in rows:
        if row[4] is not None:
            counts[row[2]] = counts.get(row[2], 0) + 1
    vantage = max(counts, key=lambda k: counts[k]) if counts else None
    out = Timeline(stride=stride, first=lo, last=hi, rows=len(rows), vantage=vantage)
    out.other_vantages = sum(counts.values()) - counts.get(vantage, 0)
    for _, at, where, letters, delays, info in rows:
        codes = bytes(letters or b"")
        missed = any(MISSED in (LETTERS.get(c >> 4), LETTERS.get(c & 0x0F)) for c in codes)
        rounds = latency.unpack_rounds(bytes(info)) if info is not None else None
        timed = []
        if rounds is not None and delays is not None and where == vantage:
            values = latency.unpack_delays(bytes(delays))
            timed = [d for _, _, d in latency.timed_votes(values, rounds, 1, 0)]
        turns = None if rounds is None else "".join(latency.turn_mark(r) for r in rounds if r.proposer == validator_id)
        out.points.append(HeightPoint(at, missed, timed, turns))
    return out
