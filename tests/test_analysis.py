"""The missing-vote analyzer on scripted votes and sets, and the alert lifecycle."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analysis.models import Alert, AlertKind, AlertSettings, HeightVerdict, RoundVerdict, ValidatorVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus.models import ChainStatus, CommitSignature, Gap, Round, Vote, VoteType
from validators.models import SetIndexState
from validators.services import Member, apply_set

from .analysishelpers import BLOCK, OLD, A, B, C, D, E, all_sign, play, vid


def verdicts(chain, height):
    return {
        v.validator.address[0]: (v.prevotes, v.precommits)
        for v in ValidatorVerdict.objects.filter(chain=chain, height=height).select_related("validator")
    }


def analyze(chain):
    return MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()


@pytest.mark.django_db
def test_missing_votes_per_round_and_type_nil_is_not_missing(net):
    play(net, 10, all_sign())
    # B's prevote never arrived but its precommit did: late, not missed. D precommitted nothing.
    play(net, 11, {0: {A: ("S", "S"), B: ("", "S"), C: ("S", "N"), D: ("S", "")}})
    # The proposer was offline: round 0 nil, B absent; round 1 commits without B's precommit.
    play(
        net,
        12,
        {
            0: {A: ("N", "N"), C: ("N", "N"), D: ("N", "N")},
            1: {A: ("S", "S"), B: ("S", ""), C: ("S", "S"), D: ("S", "S")},
        },
    )
    play(net, 13, all_sign())  # the next height started: 12 can be judged
    # 10 is the first height seen (possibly from mid-height): judging starts at 11; 13 is in progress.
    assert analyze(net) == 2
    assert verdicts(net, 11) == {"A": ("S", "S"), "B": ("L", "S"), "C": ("S", "N"), "D": ("S", "M")}
    r11 = RoundVerdict.objects.get(chain=net, height=11, round=0)
    assert (r11.prevote_power, r11.missing_prevote_power, r11.precommit_power, r11.missing_precommit_power) == (
        40,
        0,
        20,
        10,
    )
    assert HeightVerdict.objects.get(chain=net, height=11).missed_validators == 1
    assert verdicts(net, 12) == {"A": ("NS", "NS"), "B": ("MS", "MM"), "C": ("NS", "NS"), "D": ("NS", "NS")}
    h12 = HeightVerdict.objects.get(chain=net, height=12)
    assert (h12.rounds, h12.missed_validators, h12.unknown) == (2, 1, False)
    r0 = RoundVerdict.objects.get(chain=net, height=12, round=0)
    assert (r0.prevote_power, r0.prevote_nil_power, r0.missing_prevote_power) == (0, 30, 10)
    # Judged once: a second pass changes nothing.
    assert analyze(net) == 0
    assert ValidatorVerdict.objects.filter(chain=net, height=12).count() == 4


@pytest.mark.django_db
def test_gap_heights_are_unknown_and_commit_signatures_count(net):
    play(net, 20, all_sign())
    play(net, 21, {0: {A: ("S", "S"), C: ("S", "S"), D: ("S", "")}})  # ctop missed B entirely and D's precommit
    play(net, 22, {0: {A: ("S", "S"), C: ("S", "S"), D: ("S", "S")}})
    play(net, 23, all_sign())
    Gap.objects.create(chain=net, from_height=22, to_height=22, reason="not listening", detected_at=OLD)
    # The chain's commit of 21 has D's precommit (flag 2) and B's slot absent.
    for index, flag in enumerate((2, 1, 2, 2)):
        CommitSignature.objects.create(chain=net, height=21, round=0, validator_index=index, flag=flag)
    analyze(net)
    assert verdicts(net, 21) == {"A": ("S", "S"), "B": ("M", "M"), "C": ("S", "S"), "D": ("S", "S")}
    assert verdicts(net, 22)["B"] == ("U", "U")  # in a gap: unknown, never a miss
    assert not ValidatorVerdict.objects.get(chain=net, height=22, validator__address=B).missed


@pytest.mark.django_db
def test_a_set_change_mid_window_blames_nobody_wrongly(net):
    play(net, 30, all_sign())
    apply_set(net.pk, 32, [Member(B, 10, 0), Member(C, 10, 1), Member(D, 10, 2), Member(E, 10, 3)])  # A left, E joined
    play(net, 31, all_sign())
    play(net, 32, all_sign((B, C, D)))  # E (new) did not vote; A is no longer expected to
    play(net, 33, all_sign((B, C, D, E)))
    analyze(net)
    assert set(verdicts(net, 31)) == {"A", "B", "C", "D"}
    assert verdicts(net, 32) == {"B": ("S", "S"), "C": ("S", "S"), "D": ("S", "S"), "E": ("M", "M")}


@pytest.mark.django_db
def test_missed_votes_alert_opens_once_updates_and_resolves_across_restarts(net):
    play(net, 40, all_sign())
    for h in range(41, 45):
        play(net, h, {0: {A: ("S", "S"), C: ("S", "S"), D: ("S", "S")}})  # B is down
    play(net, 45, all_sign())
    analyze(net)
    alert = Alert.objects.get(chain=net, kind=AlertKind.MISSED_VOTES)
    assert alert.is_open and alert.validator.address == B
    assert alert.details["scope"] == "solo" and 44 in alert.details["heights"]
    # A restart and a second analyzer: the same alert, updated, never a second one.
    first_count = alert.count
    analyze(net)
    analyze(net)
    assert Alert.objects.filter(chain=net, kind=AlertKind.MISSED_VOTES).count() == 1
    assert Alert.objects.get(pk=alert.pk).count > first_count
    # B comes back and signs 5 heights in a row: resolved.
    for h in range(46, 52):
        play(net, h, all_sign())
    analyze(net)
    alert.refresh_from_db()
    assert not alert.is_open and alert.resolved_at is not None
    assert Alert.objects.filter(kind=AlertKind.MISSED_VOTES, is_open=True).count() == 0


@pytest.mark.django_db
def test_halt_risk_stalled_and_monitoring_alerts(net):
    AlertSettings.objects.create(chain=net, blind_after_seconds=0, cooldown_seconds=0)
    watched_since = timezone.now() - timedelta(minutes=10)
    ChainStatus.objects.create(
        chain=net, state="connected", endpoint="http://n1", updated_at=timezone.now(), since=watched_since
    )
    play(net, 60, all_sign())
    play(net, 61, {0: {A: ("S", "S"), B: ("S", "S")}})  # half the power missing
    play(net, 62, all_sign(), started=timezone.now() - timedelta(minutes=3))  # watched, and nothing new since
    analyze(net)
    kinds = set(Alert.objects.filter(chain=net, is_open=True).values_list("kind", flat=True))
    assert kinds == {AlertKind.HALT_RISK, AlertKind.STALLED}
    # ctop goes blind: a monitoring gap. Whether the chain moves is unknown now: the stall stays as it is.
    ChainStatus.objects.filter(chain=net).update(state="all_failing", reason="refused", since=timezone.now())
    analyze(net)
    kinds = set(Alert.objects.filter(chain=net, is_open=True).values_list("kind", flat=True))
    assert kinds == {AlertKind.HALT_RISK, AlertKind.STALLED, AlertKind.MONITORING_GAP}
    play(net, 63, all_sign(), started=timezone.now())
    ChainStatus.objects.filter(chain=net).update(state="connected", since=timezone.now())
    analyze(net)
    kinds = set(Alert.objects.filter(chain=net, is_open=True).values_list("kind", flat=True))
    assert AlertKind.STALLED not in kinds and AlertKind.MONITORING_GAP not in kinds


@pytest.mark.django_db
def test_heights_before_the_first_recorded_set_are_not_waited_for(chain):
    for h in range(100, 106):
        Round.objects.create(chain=chain, height=h, round=0, started_at=OLD)
    apply_set(chain.pk, 103, [Member(a, 10, i) for i, a in enumerate((A, B))])  # the indexer started at 103
    assert analyze(chain) == 2  # 103 and 104 (105 is in progress); 101-102 are skipped, not blocking
    assert set(HeightVerdict.objects.values_list("height", flat=True)) == {103, 104}


@pytest.mark.django_db
def test_a_first_set_recorded_during_the_tick_is_honoured(chain, monkeypatch, caplog):
    """The analyzer's own call to the indexer records the first set (at 103) after the tick chose
    its heights: the heights before it are skipped quietly, not reported as a missing set."""
    for h in range(100, 106):
        Round.objects.create(chain=chain, height=h, round=0, started_at=OLD)

    def first_pass(c):
        apply_set(c.pk, 103, [Member(a, 10, i) for i, a in enumerate((A, B))])
        SetIndexState.objects.create(chain=c, verified_height=105, verified_at=timezone.now())

    monkeypatch.setattr("analysis.lookups.RemoteLookups._index", staticmethod(first_pass))
    judged = MissingVoteAnalyzer([chain], fetch_commits=False, lookup_workers=0).settle()
    assert judged == 2 and set(HeightVerdict.objects.values_list("height", flat=True)) == {103, 104}
    assert "no validator set recorded" not in caplog.text


@pytest.mark.django_db
def test_unobserved_heights_are_skipped_and_gaps_raise_no_halt_risk(net):
    play(net, 70, all_sign())
    play(net, 71, all_sign())
    play(net, 72, {0: {A: ("S", "S")}})  # then ctop went down: 72 is mostly unseen
    play(net, 73, all_sign())
    Gap.objects.create(chain=net, from_height=72, to_height=5_000_000, reason="ctop was down", detected_at=OLD)
    assert analyze(net) == 2  # 71, 72
    play(net, 5_000_001, all_sign())
    play(net, 5_000_002, all_sign())
    play(net, 5_000_003, all_sign())
    assert analyze(net) == 3  # 73, then straight to the next observed heights, not millions of empty ones
    assert set(HeightVerdict.objects.values_list("height", flat=True)) == {71, 72, 73, 5_000_001, 5_000_002}
    assert HeightVerdict.objects.get(height=72).unknown
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK).exists()


@pytest.mark.django_db
def test_a_height_stuck_without_two_thirds_prevoting_is_a_live_halt_risk(net):
    ChainStatus.objects.create(chain=net, state="connected", updated_at=timezone.now(), since=OLD)
    play(net, 80, all_sign())
    play(net, 81, all_sign())
    # 82 starts and waits for a proposal (no prevote at all) for 25 s: waiting is not halting.
    Round.objects.create(chain=net, height=82, round=0, started_at=timezone.now() - timedelta(seconds=25))
    analyze(net)
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK).exists()
    Round.objects.filter(chain=net, height=82).delete()
    # 82 is in progress: only A and B prevoted (half the power) and nothing has moved for a while.
    play(net, 82, {0: {A: ("S", ""), B: ("S", "")}}, started=timezone.now() - timedelta(seconds=5))
    analyze(net)
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK).exists()  # 5 s is within halt_after_seconds
    Round.objects.filter(chain=net, height=82).update(started_at=timezone.now() - timedelta(seconds=25))
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.HALT_RISK, is_open=True)
    assert alert.details == {"height": 82, "round": 0, "live": True}
    assert "only 50% of the power prevoted" in alert.summary
    # C and D come back: 82 commits, later heights are healthy, the alert resolves.
    for address in (C, D):
        Vote.objects.create(
            chain=net,
            height=82,
            round=0,
            type=VoteType.PREVOTE,
            validator_id=vid(net, address),
            block_hash=BLOCK,
            timestamp=OLD,
            received_at=OLD,
        )
    for h in range(83, 90):
        play(net, h, all_sign(), started=timezone.now())
    analyze(net)
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK, is_open=True).exists()


@pytest.mark.django_db
def test_a_height_stuck_with_two_thirds_prevoting_but_not_precommitting_is_a_live_halt_risk(net):
    """Power lost between the two steps (two validators stop after prevoting): +2/3 prevoted, only
    half precommitted, and the round neither commits nor moves on. Seen on the real localnet."""
    ChainStatus.objects.create(chain=net, state="connected", updated_at=timezone.now(), since=OLD)
    play(net, 80, all_sign())
    play(net, 81, all_sign())
    stuck = {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "")}}
    play(net, 82, stuck, started=timezone.now() - timedelta(seconds=5))
    analyze(net)
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK).exists()  # 5 s is within halt_after_seconds
    Round.objects.filter(chain=net, height=82).update(started_at=timezone.now() - timedelta(seconds=25))
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.HALT_RISK, is_open=True)
    assert alert.details == {"height": 82, "round": 0, "live": True}
    assert "only 50% of the power precommitted" in alert.summary


@pytest.mark.django_db(transaction=True)
def test_two_analyzers_at_once_record_each_height_once_and_each_alert_once(net, monkeypatch):
    """Really in parallel: two analyzers in two threads (each its own connection) judge the same
    heights, and only then record them (held at a barrier); the natural keys and the one-open-alert
    constraint settle who records what."""
    import threading

    from django.db import connection

    from analysis import runner as runner_module

    for h in range(200, 230):
        play(net, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})  # D is down throughout
    analyzers = [MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False) for _ in range(2)]
    errors: list[BaseException] = []
    record_all = runner_module.record_all
    gate: list[threading.Barrier] = []
    judged: list[list[int]] = []

    def record_together(judgements):
        gate[-1].wait(10)  # both have judged before either records
        judged.append(sorted(j.height for js in judgements.values() for j in js))
        return record_all(judgements)

    monkeypatch.setattr(runner_module, "record_all", record_together)
    for tick in range(3):
        barrier = threading.Barrier(2)
        gate.append(threading.Barrier(2))

        def run(analyzer, barrier=barrier):
            try:
                barrier.wait(5)
                analyzer.run_once()
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(a,)) for a in analyzers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        play(net, 230 + tick, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})
    assert errors == []
    assert len(judged) == 6 and all(judged[i] and judged[i] == judged[i + 1] for i in (0, 2, 4)), judged
    heights = list(HeightVerdict.objects.filter(chain=net).values_list("height", flat=True))
    assert heights and len(heights) == len(set(heights))
    assert ValidatorVerdict.objects.filter(chain=net).count() == 4 * len(heights)
    assert Alert.objects.filter(chain=net, kind=AlertKind.MISSED_VOTES).count() == 1


@pytest.mark.django_db
def test_an_unexpected_error_in_one_chain_is_logged_and_the_other_chains_are_judged(net, monkeypatch, caplog):
    from consensus.models import Chain

    other = Chain.objects.create(name="othernet", chain_id="other-1")
    apply_set(other.pk, 1, [Member(a, 10, i) for i, a in enumerate((A, B, C, D))])
    for chain in (net, other):
        for height in (10, 11, 12):
            play(chain, height, all_sign())
    judge_chain = MissingVoteAnalyzer._judge_chain

    def broken(self, chain, settings, state):
        if chain.pk == net.pk:
            raise RuntimeError("a bug that only this chain's data reaches")
        return judge_chain(self, chain, settings, state)

    monkeypatch.setattr(MissingVoteAnalyzer, "_judge_chain", broken)
    monkeypatch.setattr("analysis.alerts.rules.stalled", lambda chain, *a: ([], []) if chain.pk != net.pk else 1 / 0)
    analyzer = MissingVoteAnalyzer([net, other], fetch_sets=False, fetch_commits=False)
    with caplog.at_level("ERROR", logger="ctop.analyzer"):
        assert analyzer.run_once() == 1  # othernet: 11 (it starts after the first height seen; 12 is under way)
    assert HeightVerdict.objects.filter(chain=other).count() == 1
    assert not HeightVerdict.objects.filter(chain=net).exists()
    messages = [r.getMessage() for r in caplog.records]
    assert "testnet: judging failed; the other chains go on" in messages
    assert "testnet: evaluating the alert rules failed; the other chains go on" in messages
