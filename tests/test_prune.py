"""Retention deletes only what is older than the cutoff, in batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from consensus.models import Chain, Gap, Round, RoundStep, Step, Vote, VoteType
from validators.models import Validator


def fill(chain: Chain, heights: range, at) -> None:
    v, _ = Validator.objects.get_or_create(chain=chain, address="AA" * 20)
    for h in heights:
        Round.objects.create(chain=chain, height=h, round=0, started_at=at)
        RoundStep.objects.create(chain=chain, height=h, round=0, step=Step.PREVOTE, seen_at=at)
        for t in VoteType:
            Vote.objects.create(
                chain=chain,
                height=h,
                round=0,
                type=t,
                validator=v,
                validator_index=0,
                timestamp=at,
                received_at=at,
            )


@pytest.mark.django_db
def test_prune_deletes_only_old_events(chain, capsys):
    now = timezone.now()
    other = Chain.objects.create(name="other")
    fill(chain, range(1, 21), now - timedelta(days=10))
    fill(chain, range(21, 31), now - timedelta(hours=1))
    fill(other, range(1, 6), now - timedelta(hours=2))
    Gap.objects.create(chain=chain, from_height=3, to_height=4, reason="test", detected_at=now)
    Gap.objects.create(chain=chain, from_height=25, to_height=26, reason="test", detected_at=now)

    call_command("prune_events", "--older-than", "7d", "--dry-run")
    assert Vote.objects.count() == 70  # dry run deletes nothing
    assert "would delete 40 consensus.Vote" in capsys.readouterr().out

    call_command("prune_events", "--older-than", "7d", "--batch-size", "7")
    assert sorted(set(Vote.objects.filter(chain=chain).values_list("height", flat=True))) == list(range(21, 31))
    assert Round.objects.filter(chain=chain).count() == 10
    assert RoundStep.objects.filter(chain=chain).count() == 10
    assert Vote.objects.filter(chain=other).count() == 10
    assert list(Gap.objects.values_list("from_height", flat=True)) == [25]


@pytest.mark.django_db
def test_prune_rejects_nonsense():
    with pytest.raises(CommandError):
        call_command("prune_events", "--older-than", "7d", "--networks", "nope")
    with pytest.raises(CommandError, match="invalid duration"):
        call_command("prune_events", "--older-than", "soon")
