"""The history tier: every judged height as one packed row, the same letters as the per-validator
verdicts, read back per validator, and still there once the verdicts are pruned."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from analysis import history
from analysis.models import HeightHistory, HeightVerdict, ValidatorVerdict, VoterSet
from analysis.runner import MissingVoteAnalyzer
from consensus.models import Gap, Validator
from validators.services import Member, apply_set

from .analysishelpers import OLD, A, B, C, D, E, all_sign, play


def analyze(chain) -> int:
    return MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()


def test_pack_and_unpack_are_inverse_round_by_round():
    validators = {7: (10, "NS", "NS"), 3: (10, "SM", "LU"), 9: (5, "US", "MN")}
    voters = sorted(validators)
    letters = history.pack(validators, voters)
    assert len(letters) == 2 * 3  # two rounds x three validators, one byte each
    assert letters[0] == history.CODES["S"] << 4 | history.CODES["L"]  # round 0 of validator 3
    for i, vid in enumerate(voters):
        assert history.unpack(letters, 3, i) == validators[vid][1:]


@pytest.mark.django_db
def test_the_digest_is_postgresqls_md5_of_the_array():
    with connection.cursor() as cur:
        cur.execute("SELECT md5(ARRAY[3, 17, 250]::int[]::text)")
        assert cur.fetchone()[0] == history.digest([3, 17, 250])


@pytest.mark.django_db
def test_each_judged_height_is_one_row_with_the_verdicts_letters(net):
    play(net, 10, all_sign())
    play(net, 11, {0: {A: ("S", "S"), B: ("", "S"), C: ("S", "N"), D: ("S", "")}})
    play(net, 12, {0: {A: ("N", "N"), C: ("N", "N"), D: ("N", "N")}, 1: {A: ("S", "S"), C: ("S", "S"), D: ("S", "")}})
    play(net, 13, all_sign())
    Gap.objects.create(chain=net, from_height=13, to_height=13, reason="test", detected_at=OLD)
    apply_set(net.pk, 14, [Member(a, 10, i) for i, a in enumerate((A, B, C, E))])  # D leaves, E joins
    play(net, 14, all_sign((A, B, C, E)))
    play(net, 15, all_sign((A, B, C, E)))
    assert analyze(net) == 4  # 11-14 (ctop starts after the first height it saw; 15 is in progress)
    assert HeightHistory.objects.filter(chain=net).count() == 4
    assert VoterSet.objects.filter(chain=net).count() == 2  # {A, B, C, D} and {A, B, C, E}
    assert HeightHistory.objects.get(chain=net, height=13).unknown
    assert HeightHistory.objects.get(chain=net, height=12).rounds == 2
    for v in Validator.objects.filter(chain=net):
        expected = {
            row.height: (row.prevotes, row.precommits)
            for row in ValidatorVerdict.objects.filter(chain=net, validator=v)
        }
        got = {h.height: (h.prevotes, h.precommits) for h in history.validator_heights(net.pk, v.pk, 100)}
        assert got == expected, v.address
    d = history.validator_heights(net.pk, Validator.objects.get(chain=net, address=D).pk, 100)
    assert [h.height for h in d] == [13, 12, 11]  # newest first, none after it left
    assert [h.height for h in d if h.missed] == [12, 11]


@pytest.mark.django_db
def test_the_validator_page_reads_the_history_after_the_verdicts_are_pruned(net, user_client):
    for h in range(20, 26):
        play(net, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})  # D is down
    play(net, 26, all_sign())
    analyze(net)
    HeightVerdict.objects.update(judged_at=timezone.now() - timedelta(days=40))
    HeightHistory.objects.update(judged_at=timezone.now() - timedelta(days=40))
    call_command("prune_events", "--older-than", "14d", "--verdicts-older-than", "30d")
    assert not ValidatorVerdict.objects.exists()
    html = user_client.get(reverse("analysis:validator", args=[net.name, D])).content.decode()
    assert "missed 5 of 5" in html and 'href="/chains/testnet/heights/24/"' in html
    call_command("prune_events", "--older-than", "14d", "--history-older-than", "365d")
    assert HeightHistory.objects.count() == 5  # a year is kept
    call_command("prune_events", "--older-than", "14d", "--history-older-than", "30d")
    assert not HeightHistory.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_voter_set_is_not_remembered(chain):
    """An analyzer whose transaction rolls back must not keep the id of a set row that is gone:
    its next recording would fail on the foreign key, height after height."""
    from django.db import transaction

    sets = history.VoterSets()

    def failed_recording() -> None:
        with transaction.atomic(), connection.cursor() as cur:
            sets.id_of(cur, chain.pk, [1, 2])
            raise RuntimeError("the recording failed")

    with pytest.raises(RuntimeError):
        failed_recording()
    assert not VoterSet.objects.exists()
    with transaction.atomic(), connection.cursor() as cur:
        made = sets.id_of(cur, chain.pk, [1, 2])
    assert VoterSet.objects.filter(pk=made).exists()
