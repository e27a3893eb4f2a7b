"""Judging completed heights: for every round a height had and both vote types, which validators of
that height's active set voted (for a block or nil) and which are missing.

Nil votes are votes. Heights inside a recorded gap are unknown, never misses, except for what the
chain itself recorded: the canonical commit (backfilled for gap heights) says, for the commit
round's precommits, who signed, who voted nil and who was absent, so a validator that stopped while
ctop was not listening is still seen missing. The precommits of the commit round are cross-checked
against the commit signatures: a vote ctop did not see but the chain recorded is not a miss. A
prevote the node never relayed while the same validator's precommit of that round was seen is
late, not missed (CometBFT drops prevotes that arrive after the
height is committed; the validator was evidently online and voting).

Heights are judged in batches: a handful of range queries load everything a run of heights needs
(votes, rounds, commit signatures, gaps, set memberships), and one transaction records them, so a
tick costs the same few round trips whether it judges one height or five hundred.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from consensus.models import BlockIdFlag, Chain, VoteType
from consensus.protocol.fields import MAX_ROUND
from validators.selectors import memberships_between

from . import history
from .latency import Timing, measure
from .models import LATE, MAX_VERDICT_ROUNDS, MISSED, NIL, SIGNED, UNKNOWN


@dataclass
class Judgement:
    height: int
    rounds: int
    commit_round: int | None
    unknown: bool
    total_power: int
    from_commit: bool = False  # nothing observed: judged from the chain's canonical commit alone
    # validator id -> (power, prevotes "SNM...", precommits "SNM...")
    validators: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    # round -> (proposer id, prevote power, prevote nil power, precommit power, precommit nil power)
    round_powers: dict[int, tuple[int | None, int, int, int, int]] = field(default_factory=dict)
    timing: Timing | None = None  # vote latency and proposals (analysis.latency); None: nothing seen

    @property
    def missed(self) -> list[int]:
        return [vid for vid, (_, pv, pc) in self.validators.items() if MISSED in pv or MISSED in pc]

    @property
    def missing_precommits(self) -> bool:
        return any(MISSED in pc for _, _, pc in self.validators.values())


@dataclass
class _Observed:
    """What is stored about one height."""

    votes: dict[tuple[int, int, int], bool] = field(default_factory=dict)  # (round, type, validator) -> for a block?
    proposers: dict[int, int | None] = field(default_factory=dict)  # round -> proposer (rounds seen)
    sigs: dict[int, tuple[int, int]] = field(default_factory=dict)  # validator_index -> (flag, round)
    arrivals: dict[tuple[int, int, int], datetime] = field(default_factory=dict)  # (round, type, validator) -> received
    round_times: dict[int, tuple[datetime, datetime | None]] = field(default_factory=dict)  # started, proposal
    endpoint: str = ""  # the vantage point (the endpoint that reported the height's first round)


def _load(chain: Chain, lo: int, hi: int) -> tuple[dict[int, _Observed], list[tuple], list[tuple[int, int]]]:
    """Everything stored for heights lo..hi: range scans on the natural-key indexes, and the set
    history's GiST index (through the validators app's selector)."""
    seen: dict[int, _Observed] = defaultdict(_Observed)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT height, round, type, validator_id, block_tag IS NOT NULL, received_at FROM consensus_vote"
            " WHERE chain_id = %s AND height BETWEEN %s AND %s",
            [chain.pk, lo, hi],
        )
        for h, r, t, vid, block, received in cur.fetchall():
            obs = seen[h]
            obs.votes[(r, t, vid)] = block
            obs.arrivals[(r, t, vid)] = received
        cur.execute(
            "SELECT height, round, proposer_id, started_at, proposal_at, endpoint FROM consensus_round"
            " WHERE chain_id = %s AND height BETWEEN %s AND %s ORDER BY height, round",
            [chain.pk, lo, hi],
        )
        for h, r, proposer, started, proposal, endpoint in cur.fetchall():
            obs = seen[h]
            obs.proposers[r] = proposer
            obs.round_times[r] = (started, proposal)
            obs.endpoint = obs.endpoint or endpoint
        cur.execute(
            "SELECT height, validator_index, flag, round FROM consensus_commitsignature"
            " WHERE chain_id = %s AND height BETWEEN %s AND %s",
            [chain.pk, lo, hi],
        )
        for h, index, flag, r in cur.fetchall():
            seen[h].sigs[index] = (flag, r)
        cur.execute(
            "SELECT from_height, to_height FROM consensus_gap WHERE chain_id = %s AND to_height >= %s"
            " AND from_height <= %s",
            [chain.pk, lo, hi],
        )
        gaps = cur.fetchall()
    return seen, memberships_between(chain.pk, lo, hi), gaps


def judge_heights(chain: Chain, heights: list[int]) -> list[Judgement | None]:
    """A judgement per height (None where the active set is not recorded yet)."""
    if not heights:
        return []
    seen, members, gaps = _load(chain, min(heights), max(heights))
    out: list[Judgement | None] = []
    for height in heights:
        active = [
            (vid, power, position)
            for lower, upper, vid, power, position in members
            if lower <= height and (upper is None or height < upper)
        ]
        in_gap = any(a <= height <= b for a, b in gaps)
        out.append(_judge(height, seen.get(height) or _Observed(), active, in_gap) if active else None)
    return out


def judge_height(chain: Chain, height: int) -> Judgement | None:
    """None when the active set at `height` is not recorded (the indexer has not reached it)."""
    return judge_heights(chain, [height])[0]


def _judge(height: int, obs: _Observed, members: list[tuple[int, int, int]], in_gap: bool) -> Judgement:
    votes, sigs = obs.votes, obs.sigs
    rounds_seen = set(obs.proposers) | {r for r, _, _ in votes}
    commit_round = next(iter(sigs.values()))[1] if sigs else None
    if commit_round is not None:
        rounds_seen.add(commit_round)
    rounds = min((max(rounds_seen) + 1) if rounds_seen else 1, MAX_ROUND)  # a count: smallint too
    # A height of more rounds than a verdict keeps (a long halt, or a node forging a round number)
    # keeps its last MAX_VERDICT_ROUNDS: the commit round and the ones that led to it.
    first = max(0, rounds - MAX_VERDICT_ROUNDS)
    # Nothing observed at all (no round, no vote) is as unknown as a recorded gap.
    unknown = in_gap or (not votes and not rounds_seen)
    total = sum(power for _, power, _ in members)
    j = Judgement(height, rounds, commit_round, unknown, total, from_commit=unknown and not votes and bool(sigs))
    powers = {r: [obs.proposers.get(r), 0, 0, 0, 0] for r in range(first, rounds)}
    for vid, power, position in members:
        pv, pc = [], []
        for r in range(first, rounds):
            precommit = votes.get((r, VoteType.PRECOMMIT, vid))
            absent = False  # the chain's commit says this precommit was absent
            if precommit is None and r == commit_round:
                sig = sigs.get(position)
                if sig is not None and sig[0] != BlockIdFlag.ABSENT:
                    precommit = sig[0] == BlockIdFlag.COMMIT  # the chain recorded it
                absent = sig is not None and sig[0] == BlockIdFlag.ABSENT
            prevote = votes.get((r, VoteType.PREVOTE, vid))
            for vote, out, col in ((prevote, pv, 1), (precommit, pc, 3)):
                if vote is None and out is pc and absent:
                    out.append(MISSED)  # unknown to ctop or not, the chain itself counted it absent
                elif vote is None and out is pv and precommit is not None and not unknown:
                    # Late, not missing; its power counts like its precommit (a validator precommits
                    # a block only after +2/3 prevoted it, its own prevote almost always among them).
                    out.append(LATE)
                    powers[r][col if precommit else col + 1] += power
                elif vote is None:
                    # A round ctop saw nothing of (no NewRound, no vote, not the commit's) is unknown
                    # to it, like a gap: rounds it skipped are not everyone's misses.
                    out.append(UNKNOWN if unknown or r not in rounds_seen else MISSED)
                else:
                    out.append(SIGNED if vote else NIL)
                    powers[r][col if vote else col + 1] += power
        j.validators[vid] = (power, "".join(pv), "".join(pc))
    j.round_powers = {r: tuple(v) for r, v in powers.items()}
    if obs.arrivals or obs.round_times:
        # Rounds that gathered +2/3 precommitting a block committed it (the chain's commit says so too).
        committed = {r for r, p in j.round_powers.items() if p[3] * 3 > total * 2}
        if commit_round is not None:
            committed.add(commit_round)
        rounds_info, delays = measure(
            first,
            rounds,
            [(vid, power) for vid, power, _ in members],
            obs.arrivals,
            obs.round_times,
            obs.proposers,
            committed,
        )
        j.timing = Timing(rounds_info, delays, obs.endpoint)
    return j


@transaction.atomic
def record_all(judgements: dict[int, list[Judgement]]) -> dict[int, list[int]]:
    """Store judgements (chain id -> its judgements) once each, every chain in one transaction and
    one statement per table. Returns, per chain, the heights this call recorded: a height another
    analyzer already recorded is skipped (the natural key decides who records a height, once)."""
    items = [(chain_id, j) for chain_id, js in judgements.items() for j in js]
    if not items:
        return {}
    now = timezone.now()
    with connection.cursor() as cur:
        # Verdicts are derived data: should a crash lose the last ones before they reach the disk,
        # the next run judges those heights again (it starts after the latest stored verdict). So
        # this transaction need not wait for its WAL flush; alerts and notifications still do.
        cur.execute("SET LOCAL synchronous_commit = off")
        cur.execute(
            "INSERT INTO analysis_heightverdict (chain_id, height, judged_at, rounds, commit_round, unknown,"
            " total_power, missed_validators, from_commit)"
            " SELECT c, h, %s, r, cr, u, t, m, f FROM unnest(%s::smallint[], %s::bigint[], %s::smallint[],"
            " %s::smallint[], %s::boolean[], %s::bigint[], %s::int[], %s::boolean[]) AS x(c, h, r, cr, u, t, m, f)"
            " ON CONFLICT (chain_id, height) DO NOTHING RETURNING chain_id, height",
            [
                now,
                [c for c, _ in items],
                [j.height for _, j in items],
                [j.rounds for _, j in items],
                [j.commit_round for _, j in items],
                [j.unknown for _, j in items],
                [j.total_power for _, j in items],
                [len(j.missed) for _, j in items],
                [j.from_commit for _, j in items],
            ],
        )
        mine = set(cur.fetchall())
        new = [(c, j) for c, j in items if (c, j.height) in mine]
        if not new:
            return {}
        rounds = [(c, j.height, r, j.total_power, *p) for c, j in new for r, p in j.round_powers.items()]
        if rounds:
            cur.execute(
                "INSERT INTO analysis_roundverdict (chain_id, height, round, total_power, proposer_id, prevote_power,"
                " prevote_nil_power, precommit_power, precommit_nil_power)"
                " SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::smallint[], %s::bigint[], %s::int[],"
                " %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT DO NOTHING",
                [list(col) for col in zip(*rounds, strict=True)],
            )
        # The heights are ours (the verdict insert above said so), so their validator rows cannot
        # exist yet: a binary COPY, the fastest way in, with no conflict to handle.
        with cur.copy(
            "COPY analysis_validatorverdict (chain_id, height, validator_id, power, prevotes, precommits, missed)"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int2", "int8", "int4", "int8", "text", "text", "bool"])
            for c, j in new:
                for vid, (power, pv, pc) in j.validators.items():
                    copy.write_row((c, j.height, vid, power, pv, pc, MISSED in pv or MISSED in pc))
        # The long-term form of the same verdicts: one packed row a height (analysis.history).
        history.record(cur, new, now)
    out: dict[int, list[int]] = {}
    for c, height in sorted(mine):
        out.setdefault(c, []).append(height)
    return out
