"""Retention deletes only what is older than the cutoff, in batches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from consensus.models import Chain, Gap, Round, RoundStep, Step, Validator, Vote, VoteType


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


@pytest.mark.django_db
def test_commit_signatures_and_dead_letters_are_pruned_in_batches(chain):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from consensus.models import CommitSignature, DeadLetter

    now = timezone.now()
    fill(chain, range(1, 21), now - timedelta(days=10))
    fill(chain, range(21, 26), now - timedelta(hours=1))
    for h in range(1, 26):
        for i in range(4):
            CommitSignature.objects.create(chain=chain, height=h, round=0, validator_index=i, flag=2)
    for i in range(30):
        DeadLetter.objects.create(chain=chain, stream="s", entry_id=f"{i}-0", payload="{", reason="bad")
    DeadLetter.objects.update(created_at=now - timedelta(days=10))
    DeadLetter.objects.create(chain=chain, stream="s", entry_id="new-0", payload="{", reason="bad")
    with CaptureQueriesContext(connection) as queries:
        call_command("prune_events", "--older-than", "7d", "--batch-size", "7")
    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    sigs = [q for q in deletes if "consensus_commitsignature" in q]
    letters = [q for q in deletes if "consensus_deadletter" in q]
    assert len(sigs) == 80 // 7 + 1 and len(letters) == 30 // 7 + 1  # 7 rows at a time
    assert set(CommitSignature.objects.values_list("height", flat=True)) == set(range(21, 26))
    assert list(DeadLetter.objects.values_list("entry_id", flat=True)) == ["new-0"]


@pytest.mark.django_db
def test_verdicts_are_kept_unless_asked_then_pruned_by_the_age_of_their_judgement(chain, capsys):
    from analysis.models import HeightVerdict, RoundVerdict, ValidatorVerdict

    from .analysishelpers import signed_verdicts

    now = timezone.now()
    v, _ = Validator.objects.get_or_create(chain=chain, address="AA" * 20)
    for h in range(1, 31):
        signed_verdicts(chain, h, v, now - timedelta(days=400 if h <= 20 else 1))
    call_command("prune_events", "--older-than", "7d")  # events only: a year of verdicts stays
    assert HeightVerdict.objects.count() == 30
    call_command("prune_events", "--older-than", "7d", "--verdicts-older-than", "365d", "--dry-run")
    assert "would delete 20 analysis.ValidatorVerdict" in capsys.readouterr().out
    assert HeightVerdict.objects.count() == 30
    call_command("prune_events", "--older-than", "7d", "--verdicts-older-than", "365d", "--batch-size", "6")
    for model in (HeightVerdict, RoundVerdict, ValidatorVerdict):
        assert sorted(model.objects.values_list("height", flat=True)) == list(range(21, 31)), model
