"""What the pages show, read in a few indexed queries: the consensus state of one round (the live
"top" view), the recent-heights grid, and one height in detail.

Every reader here is bounded by a height window on a (chain, height, ...) natural-key index, so its
cost depends on the window, never on how much history is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from consensus.models import SKEW_UNIT, Chain, Round, RoundStep, Step, Validator, Vote, VoteType
from consensus.selectors import latest_heights
from validators.selectors import active_set, latest_known_set

from .models import LATE, MISSED, NIL, SIGNED, UNKNOWN, HeightVerdict, ValidatorVerdict

TWO_THIRDS = 200 / 3  # percent


@dataclass
class Mark:
    """One validator's vote of one type in one round: "block", "nil" or "absent"."""

    kind: str
    timestamp: datetime | None = None
    received_at: datetime | None = None

    @property
    def symbol(self) -> str:
        return {"block": "✓", "nil": "∅", "absent": "·"}[self.kind]


@dataclass
class Row:
    validator: Validator
    power: int
    position: int
    share: float  # percent of the set's power
    prevote: Mark
    precommit: Mark

    @property
    def missing(self) -> bool:
        return self.prevote.kind == "absent" or self.precommit.kind == "absent"


@dataclass
class Tally:
    block: float = 0.0  # percent of the power that voted for a block
    nil: float = 0.0

    @property
    def absent(self) -> float:
        return max(0.0, 100.0 - self.block - self.nil)

    @property
    def quorum(self) -> bool:
        return self.block + self.nil > TWO_THIRDS


@dataclass
class RoundSnapshot:
    chain: Chain
    height: int
    round: int
    rounds: list[int]  # the rounds this height has had so far
    started_at: datetime | None
    proposer: Validator | None
    step: str
    step_at: datetime | None
    rows: list[Row] = field(default_factory=list)
    prevotes: Tally = field(default_factory=Tally)
    precommits: Tally = field(default_factory=Tally)
    set_height: int | None = None  # the height whose recorded set is shown (the previous one if not indexed yet)


def round_snapshot(chain: Chain, height: int | None = None, round_: int | None = None) -> RoundSnapshot | None:
    """One round of one height (default: the latest round ctop has seen), validator by validator."""
    if height is None:
        latest = latest_heights([chain.pk]).get(chain.pk)
        if latest is None:
            return None
        height = latest.height
    rounds = {r.round: r for r in Round.objects.filter(chain=chain, height=height).select_related("proposer")}
    if round_ is None:
        round_ = max(rounds) if rounds else 0
    current = rounds.get(round_)
    step_row = (
        RoundStep.objects.filter(chain=chain, height=height, round=round_)
        .order_by("-step")
        .values_list("step", "seen_at")
    ).first()
    snap = RoundSnapshot(
        chain=chain,
        height=height,
        round=round_,
        rounds=sorted(rounds),
        started_at=current.started_at if current else None,
        proposer=current.proposer if current else None,
        step=Step(step_row[0]).label if step_row else "",
        step_at=step_row[1] if step_row else None,
    )
    members, snap.set_height = latest_known_set(chain.pk, height)
    marks: dict[tuple[int, int], Mark] = {}
    votes = Vote.objects.filter(chain=chain, height=height, round=round_)
    for vid, vote_type, block, skew, received in votes.values_list(
        "validator_id", "type", "block_tag", "skew", "received_at"
    ):
        marks[(vid, vote_type)] = _mark(block, skew, received)
    total = sum(m.voting_power for m in members) or 1
    for m in members:
        share = 100.0 * m.voting_power / total
        prevote = marks.get((m.validator_id, VoteType.PREVOTE), Mark("absent"))
        precommit = marks.get((m.validator_id, VoteType.PRECOMMIT), Mark("absent"))
        for mark, tally in ((prevote, snap.prevotes), (precommit, snap.precommits)):
            if mark.kind == "block":
                tally.block += share
            elif mark.kind == "nil":
                tally.nil += share
        snap.rows.append(Row(m.validator, m.voting_power, m.position, share, prevote, precommit))
    return snap


def _mark(block_tag: int | None, skew: int, received: datetime) -> Mark:
    """A stored vote as shown: its block or nil, its own timestamp (kept as an offset) and arrival."""
    return Mark("block" if block_tag is not None else "nil", received + skew * SKEW_UNIT, received)


@dataclass
class GridColumn:
    height: int
    rounds: int
    unknown: bool
    from_commit: bool = False  # ctop saw none of it: judged from the chain's canonical commit


@dataclass
class GridRow:
    validator: Validator
    cells: list[tuple[int, str]]  # (height, "S" | "N" | "M" | "U" | "L" | "") per column
    missed: int


def heights_grid(chain: Chain, count: int = 100, until: int | None = None) -> tuple[list[GridColumn], list[GridRow]]:
    """Validators x the latest `count` judged heights (up to `until`), from the stored verdicts."""
    verdicts = HeightVerdict.objects.filter(chain=chain)
    if until is not None:
        verdicts = verdicts.filter(height__lte=until)
    columns = [
        GridColumn(h, r, u, c)
        for h, r, u, c in verdicts.order_by("-height").values_list("height", "rounds", "unknown", "from_commit")[:count]
    ][::-1]
    if not columns:
        return [], []
    lo, hi = columns[0].height, columns[-1].height
    cells: dict[int, dict[int, str]] = {}
    for vid, h, pv, pc in ValidatorVerdict.objects.filter(chain=chain, height__gte=lo, height__lte=hi).values_list(
        "validator_id", "height", "prevotes", "precommits"
    ):
        cells.setdefault(vid, {})[h] = _cell(pv, pc)
    validators = Validator.objects.in_bulk(list(cells))
    # Newest set order (power, then position) so the big validators lead, as in `top`.
    order = {m.validator_id: (-m.voting_power, m.position) for m in active_set(chain.pk, hi)}
    rows = []
    for vid, by_height in cells.items():
        row = [(c.height, by_height.get(c.height, "")) for c in columns]
        rows.append(GridRow(validators[vid], row, sum(1 for _, mark in row if mark == MISSED)))
    rows.sort(key=lambda r: (order.get(r.validator.pk, (1, 1 << 30)), r.validator.address))
    return columns, rows


def _cell(prevotes: str, precommits: str) -> str:
    """One letter for a validator at a height: the worst of its votes (missed > unknown > nil > late > signed)."""
    marks = prevotes + precommits
    for letter in (MISSED, UNKNOWN, NIL, LATE, SIGNED):
        if letter in marks:
            return letter
    return ""


@dataclass
class HeightRound:
    round: int
    started_at: datetime | None
    proposer: Validator | None
    block_hash: str
    steps: list[tuple[str, datetime, float]]  # (step, seen at, seconds since the round started)
    rows: list[tuple[Validator, int, Mark, Mark]]  # validator, power, prevote, precommit
    rows_html: str = ""  # filled by the view (analysis.tables)


def height_detail(chain: Chain, height: int) -> list[HeightRound]:
    """Every round of a height: steps with their times, and every active validator's two votes with
    the vote's own timestamp and when ctop received it (who was late)."""
    rounds = {r.round: r for r in Round.objects.filter(chain=chain, height=height).select_related("proposer")}
    steps: dict[int, list[tuple[int, datetime]]] = {}
    for r, step, seen in (
        RoundStep.objects.filter(chain=chain, height=height)
        .order_by("round", "seen_at")
        .values_list("round", "step", "seen_at")
    ):
        steps.setdefault(r, []).append((step, seen))
    marks: dict[tuple[int, int, int], Mark] = {}
    for r, vid, vote_type, block, skew, received in Vote.objects.filter(chain=chain, height=height).values_list(
        "round", "validator_id", "type", "block_tag", "skew", "received_at"
    ):
        marks[(r, vid, vote_type)] = _mark(block, skew, received)
    members, _ = latest_known_set(chain.pk, height)
    out = []
    for r in sorted(set(rounds) | set(steps) | {k[0] for k in marks}):
        row = rounds.get(r)
        started = row.started_at if row else None
        out.append(
            HeightRound(
                round=r,
                started_at=started,
                proposer=row.proposer if row else None,
                block_hash=bytes(row.block_hash).hex().upper() if row and row.block_hash else "",
                steps=[
                    (Step(s).label, seen, (seen - started).total_seconds() if started else 0.0)
                    for s, seen in steps.get(r, [])
                ],
                rows=[
                    (
                        m.validator,
                        m.voting_power,
                        marks.get((r, m.validator_id, VoteType.PREVOTE), Mark("absent")),
                        marks.get((r, m.validator_id, VoteType.PRECOMMIT), Mark("absent")),
                    )
                    for m in members
                ],
            )
        )
    return out
