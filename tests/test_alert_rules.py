"""Alert rules that take time into account: flapping conditions, mass misses, and what ctop may
conclude about time during which it was not watching (a restart must page nobody)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analysis.alerts import evaluate
from analysis.models import Alert, AlertKind, AlertSettings, ChannelKind, Notification, NotificationChannel
from analysis.runner import MissingVoteAnalyzer
from consensus.models import ChainStatus, Round
from validators.services import Member, apply_set

from .analysishelpers import OLD, A, B, C, D, all_sign, play


def status(chain, state: str, *, since, at=None, height=None, reason="") -> None:
    ChainStatus.objects.update_or_create(
        chain=chain,
        defaults={
            "state": state,
            "since": since,
            "updated_at": at or since,
            "height": height,
            "reason": reason,
            "interval": 10.0,
            "endpoint": "http://n1",
        },
    )


def kinds(chain) -> set[str]:
    return set(Alert.objects.filter(chain=chain, is_open=True).values_list("kind", flat=True))


def notified(*kinds_: str) -> list[tuple[str, str]]:
    return list(Notification.objects.filter(alert__kind__in=kinds_).values_list("alert__kind", "event"))


@pytest.fixture
def hook(db):
    return NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/h")


# --- flapping ---


@pytest.mark.django_db
def test_ten_status_flips_make_one_monitoring_alert_and_two_messages(chain, hook):
    settings = AlertSettings.objects.create(chain=chain, blind_after_seconds=5, cooldown_seconds=60)
    t0 = timezone.now() - timedelta(minutes=10)
    for flip in range(10):
        t = t0 + timedelta(seconds=10 * flip)
        state = "all_failing" if flip % 2 == 0 else "connected"
        status(chain, state, since=t)
        evaluate(chain, t + timedelta(seconds=9), settings)  # each state held for 9 s when judged
    assert Alert.objects.filter(chain=chain, kind=AlertKind.MONITORING_GAP).count() == 1
    assert kinds(chain) == {AlertKind.MONITORING_GAP}  # connected for 9 s is not yet 60 s
    end = t0 + timedelta(seconds=100)
    status(chain, "connected", since=end)
    evaluate(chain, end + timedelta(seconds=10), settings)
    assert kinds(chain) == {AlertKind.MONITORING_GAP}
    status(chain, "connected", since=end, at=end + timedelta(seconds=74))  # its heartbeat, still fresh
    evaluate(chain, end + timedelta(seconds=75), settings)  # clear for the whole cool-down
    assert kinds(chain) == set()
    assert notified(AlertKind.MONITORING_GAP) == [("monitoring_gap", "opened"), ("monitoring_gap", "resolved")]


@pytest.mark.django_db
def test_a_stall_that_flaps_resolves_only_after_the_cooldown(net, hook):
    settings = AlertSettings.objects.create(chain=net, stall_after_seconds=60, cooldown_seconds=60)
    t0 = timezone.now() - timedelta(minutes=30)
    status(net, "connected", since=t0 - timedelta(hours=1), at=timezone.now())
    play(net, 10, all_sign(), started=t0)
    evaluate(net, t0 + timedelta(seconds=90), settings)
    assert kinds(net) == {AlertKind.STALLED}
    for i, h in enumerate(range(11, 16)):  # a height trickles in now and then, the chain stalls again
        started = t0 + timedelta(seconds=100 + 100 * i)
        play(net, h, all_sign(), started=started)
        evaluate(net, started + timedelta(seconds=5), settings)  # a new height: clear, cool-down starts
        evaluate(net, started + timedelta(seconds=90), settings)  # stuck again
    assert Alert.objects.filter(chain=net, kind=AlertKind.STALLED).count() == 1
    last = t0 + timedelta(seconds=700)
    play(net, 16, all_sign(), started=last)  # moving again, for good
    evaluate(net, last + timedelta(seconds=1), settings)
    assert kinds(net) == {AlertKind.STALLED}  # clear for 1 s is not the 60 s cool-down
    play(net, 17, all_sign(), started=last + timedelta(seconds=30))
    evaluate(net, last + timedelta(seconds=62), settings)
    assert kinds(net) == set()
    assert notified(AlertKind.STALLED) == [("stalled", "opened"), ("stalled", "resolved")]


@pytest.mark.django_db
def test_more_validators_missing_than_the_cap_is_one_network_wide_alert(chain):
    addresses = [f"{i:02X}" * 20 for i in range(15)]
    apply_set(chain.pk, 1, [Member(a, 10, i) for i, a in enumerate(addresses)])
    AlertSettings.objects.create(chain=chain, max_validator_alerts=10, cooldown_seconds=0)
    for h in range(20, 24):  # 12 of 15 miss: a node lying about its set, or a network-wide outage
        play(chain, h, {0: {a: ("S", "S") for a in addresses[:3]}})
    play(chain, 24, {0: {}})
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()
    assert AlertKind.MASS_MISSED_VOTES in kinds(chain)  # (and halt risk: 4/5 of the power missing)
    assert not Alert.objects.filter(chain=chain, kind=AlertKind.MISSED_VOTES).exists()
    mass = Alert.objects.get(chain=chain, kind=AlertKind.MASS_MISSED_VOTES)
    assert mass.details["count"] == 12 and "12 validators are missing votes" in mass.summary
    # They come back but two: the network-wide alert resolves, the two get their own.
    Round.objects.filter(chain=chain, height=24).delete()
    for h in range(24, 34):
        play(chain, h, {0: {a: ("S", "S") for a in addresses[:13]}})
    play(chain, 34, {0: {}})
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()
    assert AlertKind.MASS_MISSED_VOTES not in kinds(chain)
    assert Alert.objects.filter(chain=chain, kind=AlertKind.MISSED_VOTES, is_open=True).count() == 2


# --- time ctop was not watching ---


def analyze(chain) -> None:
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()


@pytest.mark.django_db
def test_restarting_ctop_after_27_minutes_pages_nobody(net, hook):
    stopped = timezone.now() - timedelta(minutes=27)
    for h in range(95, 99):
        play(net, h, all_sign(), started=stopped - timedelta(seconds=99 - h))
    status(net, "connected", since=stopped - timedelta(hours=2), at=stopped)  # its last word, 27 min old
    analyze(net)  # the analyzer's first tick comes before the subscriber's first report
    assert kinds(net) == set()
    status(net, "connected", since=timezone.now())  # the subscriber is back and reports
    play(net, 99, {0: {}}, started=timezone.now())
    analyze(net)
    assert kinds(net) == set()
    assert notified(AlertKind.STALLED, AlertKind.HALT_RISK, AlertKind.MONITORING_GAP) == []


@pytest.mark.django_db
def test_restarting_only_the_analyzer_pages_nobody(net, hook):
    status(net, "connected", since=timezone.now() - timedelta(hours=1), at=timezone.now())
    for h in range(50, 55):
        play(net, h, all_sign(), started=timezone.now() - timedelta(seconds=2 * (56 - h)))
    play(net, 55, {0: {}}, started=timezone.now())
    analyze(net)
    assert kinds(net) == set()
    assert notified(AlertKind.STALLED, AlertKind.HALT_RISK) == []


@pytest.mark.django_db
def test_a_long_redis_outage_is_a_monitoring_gap_not_a_stall(net, hook):
    AlertSettings.objects.create(chain=net, blind_after_seconds=30)
    outage = timezone.now() - timedelta(minutes=5)
    for h in range(70, 75):
        play(net, h, all_sign(), started=outage - timedelta(seconds=75 - h))
    status(net, "connected", since=outage - timedelta(hours=1), at=outage)  # no report got through since
    analyzer = MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False)
    analyzer.started_at -= timedelta(hours=1)  # it kept running all along
    analyzer.run_once()
    assert kinds(net) == {AlertKind.MONITORING_GAP}
    assert "last report is" in Alert.objects.get(kind=AlertKind.MONITORING_GAP).summary
    assert notified(AlertKind.STALLED, AlertKind.HALT_RISK) == []


@pytest.mark.django_db
def test_a_backlog_draining_after_a_postgresql_outage_is_no_stall(net, hook):
    # The subscriber reports live (height 400), PostgreSQL holds heights up to 300, stored 10 min
    # ago and still draining: the stored record is old, not the chain.
    status(net, "connected", since=timezone.now() - timedelta(hours=1), at=timezone.now(), height=400)
    for h in range(296, 301):
        play(net, h, {0: {A: ("S", ""), B: ("S", "")}}, started=timezone.now() - timedelta(minutes=10))
    analyze(net)
    assert AlertKind.STALLED not in kinds(net)
    assert notified(AlertKind.STALLED) == []
    assert not Alert.objects.filter(kind=AlertKind.HALT_RISK, details__live=True).exists()


@pytest.mark.django_db
def test_a_real_stall_while_watching_is_still_alerted(net, hook):
    status(net, "connected", since=timezone.now() - timedelta(hours=1), at=timezone.now(), height=81)
    play(net, 80, all_sign(), started=OLD)
    play(net, 81, {0: {A: ("S", ""), B: ("S", ""), C: ("", ""), D: ("", "")}}, started=OLD)
    analyze(net)
    assert {AlertKind.STALLED, AlertKind.HALT_RISK} <= kinds(net)


# --- the rules' other edges ---


@pytest.mark.django_db
def test_five_misses_in_twenty_heights_with_no_two_in_a_row_open_an_alert(net):
    from .analysishelpers import all_sign

    for h in range(100, 120):
        votes = all_sign()[0] if h % 4 != 1 else {a: v for a, v in all_sign()[0].items() if a != D}  # 1 in 4
        play(net, h, {0: votes})
    play(net, 120, {0: {}})
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES, is_open=True)
    assert alert.validator.address == D and alert.details["heights"] == [117, 113, 109, 105, 101]
    assert "(0 in a row" in alert.summary and alert.details["scope"] == "solo"


@pytest.mark.django_db
def test_misses_shared_by_over_a_third_of_the_set_are_network_wide(net):
    for h in range(30, 33):  # B and C (half the set) miss together
        play(net, h, {0: {A: ("S", "S"), D: ("S", "S")}})
    play(net, 33, {0: {}})
    analyze(net)
    scopes = set(Alert.objects.filter(kind=AlertKind.MISSED_VOTES).values_list("details__scope", flat=True))
    assert scopes == {"network-wide"}


@pytest.mark.django_db
def test_three_rounds_at_one_height_is_a_halt_risk(net):
    play(net, 40, all_sign())
    play(net, 41, {0: {}, 1: {}, 2: all_sign()[0]})  # the height needed three rounds
    play(net, 42, {0: {}})
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.HALT_RISK)
    assert alert.details["height"] == 41 and alert.details["round"] == 2


@pytest.mark.django_db
def test_an_alert_resolved_by_hand_is_reopened_by_the_next_tick_if_it_still_holds(net):
    from analysis.lifecycle import resolve

    for h in range(50, 54):
        play(net, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})  # D down
    play(net, 54, {0: {}})
    analyze(net)
    first = Alert.objects.get(kind=AlertKind.MISSED_VOTES, is_open=True)
    resolve(net, first.kind, first.validator_id, now=timezone.now(), note="resolved by ops")
    play(net, 55, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})
    Round.objects.filter(chain=net, height=54).update(started_at=OLD)
    play(net, 56, {0: {}})
    analyze(net)
    again = Alert.objects.get(kind=AlertKind.MISSED_VOTES, is_open=True)
    assert again.pk != first.pk and again.validator_id == first.validator_id
    assert Alert.objects.get(pk=first.pk).details["resolution"] == "resolved by ops"
