"""Judging one completed height: for every round it had and both vote types, which validators of
that height's active set voted (for a block or nil) and which are missing.

Nil votes are votes. Heights inside a recorded gap are unknown, never misses. The precommits of the
commit round are cross-checked against the block's commit signatures: a vote ctop did not see but
the chain recorded is not a miss. A prevote the node never relayed while the same validator's
precommit of that round was seen is late, not missed (CometBFT drops prevotes that arrive after the
height is committed; the validator was evidently online and voting).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from consensus.models import BlockIdFlag, Chain, CommitSignature, Gap, Round, Vote, VoteType
from validators.selectors import active_set

from .models import LATE, MISSED, NIL, SIGNED, UNKNOWN, HeightVerdict, RoundVerdict, ValidatorVerdict


@dataclass
class Judgement:
    height: int
    rounds: int
    commit_round: int | None
    unknown: bool
    total_power: int
    # validator id -> (power, prevotes "SNM...", precommits "SNM...")
    validators: dict[int, tuple[int, str, str]] = field(default_factory=dict)
    # round -> (proposer id, prevote power, prevote nil power, precommit power, precommit nil power)
    round_powers: dict[int, tuple[int | None, int, int, int, int]] = field(default_factory=dict)

    @property
    def missed(self) -> list[int]:
        return [vid for vid, (_, pv, pc) in self.validators.items() if MISSED in pv or MISSED in pc]

    @property
    def missing_precommits(self) -> bool:
        return any(MISSED in pc for _, _, pc in self.validators.values())


def in_gap(chain: Chain, height: int) -> bool:
    # gap_chain_to index: (chain, to_height) >= height, then the few candidates are checked.
    return Gap.objects.filter(chain=chain, to_height__gte=height, from_height__lte=height).exists()


def judge_height(chain: Chain, height: int) -> Judgement | None:
    """None when the active set at `height` is not recorded (the indexer has not reached it)."""
    members = list(active_set(chain.pk, height))
    if not members:
        return None
    votes: dict[tuple[int, int, int], bool] = {}  # (round, type, validator) -> for a block?
    for r, t, vid, block in Vote.objects.filter(chain=chain, height=height).values_list(
        "round", "type", "validator_id", "block_hash"
    ):
        votes[(r, t, vid)] = block is not None
    rounds_seen = set(Round.objects.filter(chain=chain, height=height).values_list("round", flat=True))
    rounds_seen |= {r for r, _, _ in votes}
    sigs = {
        s.validator_index: s
        for s in CommitSignature.objects.filter(chain=chain, height=height).only("validator_index", "flag", "round")
    }
    commit_round = next(iter(sigs.values())).round if sigs else None
    if commit_round is not None:
        rounds_seen.add(commit_round)
    rounds = (max(rounds_seen) + 1) if rounds_seen else 1
    # Nothing observed at all (no round, no vote) is as unknown as a recorded gap.
    unknown = in_gap(chain, height) or (not votes and not rounds_seen)
    proposers = dict(Round.objects.filter(chain=chain, height=height).values_list("round", "proposer_id"))
    total = sum(m.voting_power for m in members)
    j = Judgement(height, rounds, commit_round, unknown, total)
    powers = {r: [proposers.get(r), 0, 0, 0, 0] for r in range(rounds)}
    for m in members:
        pv, pc = [], []
        for r in range(rounds):
            precommit = votes.get((r, VoteType.PRECOMMIT, m.validator_id))
            if precommit is None and r == commit_round:
                sig = sigs.get(m.position)
                if sig is not None and sig.flag != BlockIdFlag.ABSENT:
                    precommit = sig.flag == BlockIdFlag.COMMIT  # the chain recorded it
            prevote = votes.get((r, VoteType.PREVOTE, m.validator_id))
            for seen, out, col in ((prevote, pv, 1), (precommit, pc, 3)):
                if seen is None and out is pv and precommit is not None:
                    # Late, not missing; its power counts like its precommit (a validator precommits
                    # a block only after +2/3 prevoted it, its own prevote almost always among them).
                    out.append(LATE)
                    powers[r][col if precommit else col + 1] += m.voting_power
                elif seen is None:
                    out.append(UNKNOWN if unknown else MISSED)
                else:
                    out.append(SIGNED if seen else NIL)
                    powers[r][col if seen else col + 1] += m.voting_power
        j.validators[m.validator_id] = (m.voting_power, "".join(pv), "".join(pc))
    j.round_powers = {r: tuple(v) for r, v in powers.items()}
    return j


@transaction.atomic
def record(chain: Chain, j: Judgement) -> bool:
    """Store a judgement once; False if another analyzer already stored this height."""
    try:
        with transaction.atomic():  # the natural key decides who records a height: exactly once
            HeightVerdict.objects.create(
                chain=chain,
                height=j.height,
                judged_at=timezone.now(),
                rounds=j.rounds,
                commit_round=j.commit_round,
                unknown=j.unknown,
                total_power=j.total_power,
                missed_validators=len(j.missed),
            )
    except IntegrityError:
        return False
    RoundVerdict.objects.bulk_create(
        [
            RoundVerdict(
                chain=chain,
                height=j.height,
                round=r,
                proposer_id=p[0],
                total_power=j.total_power,
                prevote_power=p[1],
                prevote_nil_power=p[2],
                precommit_power=p[3],
                precommit_nil_power=p[4],
            )
            for r, p in j.round_powers.items()
        ],
        ignore_conflicts=True,
    )
    ValidatorVerdict.objects.bulk_create(
        [
            ValidatorVerdict(
                chain=chain,
                height=j.height,
                validator_id=vid,
                power=power,
                prevotes=pv,
                precommits=pc,
                missed=MISSED in pv or MISSED in pc,
            )
            for vid, (power, pv, pc) in j.validators.items()
        ],
        ignore_conflicts=True,
    )
    return True
