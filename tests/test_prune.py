"""Retention: old votes go a whole partition at a time, the other old events in batches; nothing
younger than the cutoff is touched."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from consensus import partitions
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
                timestamp=at,
                received_at=at,
            )


@pytest.mark.django_db
def test_prune_drops_whole_vote_partitions_and_deletes_only_old_events(capsys):
    now = timezone.now()
    chain = Chain.objects.create(name="tenner", partition_heights=10)
    other = Chain.objects.create(name="other", partition_heights=10)
    fill(chain, range(1, 25), now - timedelta(days=10))
    fill(chain, range(25, 31), now - timedelta(hours=1))
    fill(other, range(1, 6), now - timedelta(hours=2))
    Gap.objects.create(chain=chain, from_height=3, to_height=4, reason="test", detected_at=now)
    Gap.objects.create(chain=chain, from_height=25, to_height=26, reason="test", detected_at=now)
    assert [p.lo for p in partitions.existing(chain.pk)] == [0, 10, 20, 30]

    call_command("prune_events", "--older-than", "7d", "--dry-run")
    assert Vote.objects.count() == 70  # dry run deletes nothing
    out = capsys.readouterr().out
    assert "tenner: events below height 25" in out and "would delete 2 consensus.Vote partitions" in out

    call_command("prune_events", "--older-than", "7d", "--batch-size", "7")
    # Heights 0-19 went as two whole partitions; 20-29 straddles the cut (25) and stays whole.
    assert [p.lo for p in partitions.existing(chain.pk)] == [20, 30]
    assert sorted(set(Vote.objects.filter(chain=chain).values_list("height", flat=True))) == list(range(20, 31))
    assert Round.objects.filter(chain=chain).count() == 6  # the small tables: exactly below the cut
    assert RoundStep.objects.filter(chain=chain).count() == 6
    assert Vote.objects.filter(chain=other).count() == 10
    assert [p.lo for p in partitions.existing(other.pk)] == [0]
    assert list(Gap.objects.values_list("from_height", flat=True)) == [25]


@pytest.mark.django_db
def test_a_partition_no_longer_written_is_compacted_once(chain):
    chain.partition_heights = 10
    chain.save()
    fill(chain, range(1, 25), timezone.now())
    done = partitions.compact(chain.pk, latest_height=20)
    assert [p.lo for p in done] == [0, 10]  # [20, 30) is still written
    assert partitions.compact(chain.pk, latest_height=20) == []  # each only once
    with connection.cursor() as cur:
        cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [done[0].name + "_pkey"])
        assert cur.fetchone()[0] == ["fillfactor=100"]
    assert Vote.objects.filter(chain=chain, height__lt=20).count() == 38  # nothing lost by the rebuild


@pytest.mark.django_db
def test_deleting_a_chain_drops_its_partitions_and_every_per_height_row(chain):
    from analysis.models import HeightVerdict, ValidatorVerdict

    from .analysishelpers import signed_verdicts

    other = Chain.objects.create(name="other")
    fill(chain, range(1, 4), timezone.now())
    fill(other, range(1, 4), timezone.now())
    v = Validator.objects.get(chain=chain)
    signed_verdicts(chain, 1, v, timezone.now())
    gone = chain.pk
    chain.delete()
    assert partitions.existing(gone) == [] and not Round.objects.filter(chain_id=gone).exists()
    assert not HeightVerdict.objects.exists() and not ValidatorVerdict.objects.exists()
    assert Vote.objects.filter(chain=other).count() == 6 and Round.objects.filter(chain=other).count() == 3


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


@pytest.mark.django_db
def test_a_writer_makes_the_next_partition_before_it_is_needed(chain):
    from django.test.utils import CaptureQueriesContext

    Chain.objects.filter(pk=chain.pk).update(partition_heights=10)
    cache = partitions.PartitionCache()
    cache.ensure([(chain.pk, 3)])
    assert [p.lo for p in partitions.existing(chain.pk)] == [0]
    cache.ensure([(chain.pk, 8)])  # 80% into [0, 10): [10, 20) is made now, before height 10 comes
    assert [p.lo for p in partitions.existing(chain.pk)] == [0, 10]
    with CaptureQueriesContext(connection) as queries:
        cache.ensure([(chain.pk, 9), (chain.pk, 4)])
    assert len(queries) == 0  # what a writer made sure of costs it no query
