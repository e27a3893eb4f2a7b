"""Scripted votes and sets for analysis and page tests."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from consensus.models import Round, Validator, Vote, VoteType

A, B, C, D, E = ("A" * 40, "B" * 40, "C" * 40, "D" * 40, "E" * 40)
BLOCK = b"\x01" * 32
OLD = timezone.now() - timedelta(minutes=5)


def vid(chain, address):
    return Validator.objects.get(chain=chain, address=address).pk


def play(chain, height, rounds: dict[int, dict[str, tuple[str, str]]], started=OLD):
    """rounds: {round: {address: (prevote, precommit)}} with S (block), N (nil), "" (no vote)."""
    for r, votes in rounds.items():
        Round.objects.create(chain=chain, height=height, round=r, started_at=started)
        for address, (pv, pc) in votes.items():
            for vote_type, mark in ((VoteType.PREVOTE, pv), (VoteType.PRECOMMIT, pc)):
                if mark:
                    Vote.objects.create(
                        chain=chain,
                        height=height,
                        round=r,
                        type=vote_type,
                        validator_id=vid(chain, address),
                        block_hash=BLOCK if mark == "S" else None,
                        timestamp=started,
                        received_at=started,
                    )


def all_sign(addresses=(A, B, C, D)):
    return {0: {a: ("S", "S") for a in addresses}}


def signed_verdicts(chain, height: int, validator, judged_at) -> None:
    """A height judged all signed by one validator of power 10: its height, round and validator rows."""
    from analysis.models import HeightVerdict, RoundVerdict, ValidatorVerdict

    HeightVerdict.objects.create(chain=chain, height=height, judged_at=judged_at, rounds=1, total_power=10)
    RoundVerdict.objects.create(
        chain=chain,
        height=height,
        round=0,
        total_power=10,
        prevote_power=10,
        prevote_nil_power=0,
        precommit_power=10,
        precommit_nil_power=0,
    )
    ValidatorVerdict.objects.create(
        chain=chain, height=height, validator=validator, power=10, prevotes="S", precommits="S", missed=False
    )
