"""Alerts from the chain's own status (analysis.chainstatus): jail risk (warning, critical,
resolved as the counter falls), jailed and unjailed, tombstoned, left the active set and rejoined,
a large voting-power change; each through the lifecycle, with the notifications it queues. And the
validator page's status block: the chain's counter, ctop's own count beside it, the time to jail,
and why status is missing when it is."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from analysis import chainstatus
from analysis.lifecycle import apply
from analysis.models import (
    Alert,
    AlertKind,
    AlertSettings,
    ChannelKind,
    Notification,
    NotificationChannel,
    Severity,
)
from validators.models import ChainRestStatus, ValidatorStatus
from validators.services import Member, apply_set

from .analysishelpers import A, B, C, D, all_sign, play, vid


def evaluate(chain, rule) -> dict[tuple[str, int], Alert]:
    open_alerts = {(a.kind, a.validator_id): a for a in Alert.objects.filter(chain=chain, is_open=True)}
    found, cleared = rule(open_alerts)
    apply(chain, timezone.now(), found, cleared, open_alerts)
    return {(a.kind, a.validator_id): a for a in Alert.objects.filter(chain=chain, is_open=True)}


@pytest.fixture
def slashing(net):
    """The chain allows 50 misses in a window of 100; A has a fresh status read; a channel listens."""
    ChainRestStatus.objects.create(
        chain=net,
        signed_blocks_window=100,
        min_signed_per_window=Decimal("0.5"),
        downtime_jail_seconds=600,
        read_at=timezone.now(),
    )
    NotificationChannel.objects.create(name="ops", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/hook")
    ValidatorStatus.objects.create(validator_id=vid(net, A), chain=net, bond_status="bonded", read_at=timezone.now())
    return net


def set_status(chain, **fields) -> None:
    """A's status as a fresh read of both the staking and the slashing module left it."""
    now = timezone.now()
    ValidatorStatus.objects.filter(validator_id=vid(chain, A)).update(read_at=now, counters_read_at=now, **fields)


def events(alert: Alert) -> list[str]:
    return list(Notification.objects.filter(alert=alert).order_by("id").values_list("event", flat=True))


@pytest.mark.django_db
def test_jail_risk_warns_then_turns_critical_then_resolves(slashing):
    settings = AlertSettings.objects.create(chain=slashing, cooldown_seconds=0)  # 50% warning, 80% critical
    rule = lambda open_alerts: chainstatus.status_alerts(slashing, settings, open_alerts, timezone.now())  # noqa: E731
    key = (AlertKind.JAIL_RISK, vid(slashing, A))
    set_status(slashing, missed_blocks_counter=24)  # 48%: nothing yet
    assert key not in evaluate(slashing, rule)
    set_status(slashing, missed_blocks_counter=25)  # 50%
    alert = evaluate(slashing, rule)[key]
    assert alert.severity == Severity.WARNING
    assert alert.summary == "jail risk: 25 of 50 allowed misses (50%) in the chain's window of 100 blocks"
    assert alert.details["share"] == 0.5
    set_status(slashing, missed_blocks_counter=41)  # 82%
    alert = evaluate(slashing, rule)[key]
    assert alert.severity == Severity.CRITICAL and "41 of 50" in alert.summary
    set_status(slashing, missed_blocks_counter=21)  # 42%: under the warning share, not 10 points under
    assert key in evaluate(slashing, rule)
    set_status(slashing, missed_blocks_counter=10)  # the window slid past the misses
    assert key not in evaluate(slashing, rule)
    alert.refresh_from_db()
    assert alert.details["resolution"] == "counter at 20%"
    assert events(alert) == ["opened", "escalated", "resolved"]  # one message per state


@pytest.mark.django_db
def test_jailed_then_unjailed_and_tombstoned_for_good(slashing):
    settings = AlertSettings.objects.create(chain=slashing, cooldown_seconds=0)
    rule = lambda open_alerts: chainstatus.status_alerts(slashing, settings, open_alerts, timezone.now())  # noqa: E731
    a = vid(slashing, A)
    until = timezone.now() + timedelta(minutes=10)
    jailed_fields = {"jailed": True, "bond_status": "unbonding", "jailed_until": until, "missed_blocks_counter": 0}
    # Jailed already at ctop's first read (no jailing ctop saw): not a page.
    set_status(slashing, **jailed_fields)
    assert (AlertKind.JAILED, a) not in evaluate(slashing, rule)
    set_status(slashing, jailed_since=timezone.now(), **jailed_fields)  # what a read saw happen
    alerts = evaluate(slashing, rule)
    jailed = alerts[(AlertKind.JAILED, a)]
    assert jailed.severity == Severity.CRITICAL
    assert jailed.summary == f"jailed until {until:%Y-%m-%d %H:%M} UTC (status unbonding)"
    assert (AlertKind.JAIL_RISK, a) not in alerts  # jailed says it all
    set_status(slashing, jailed=False, jailed_since=None, bond_status="bonded")
    assert (AlertKind.JAILED, a) not in evaluate(slashing, rule)
    jailed.refresh_from_db()
    assert jailed.details["resolution"] == "unjailed" and events(jailed) == ["opened", "resolved"]
    set_status(slashing, tombstoned=True, tombstoned_since=timezone.now())
    for _ in range(2):
        tomb = evaluate(slashing, rule)[(AlertKind.TOMBSTONED, a)]
    assert tomb.count == 2 and events(tomb) == ["opened"]  # it lasts: updated, never re-opened
    # A week on, the rule lets it be: resolved by hand, it is not reopened.
    set_status(slashing, tombstoned_since=timezone.now() - timedelta(seconds=chainstatus.FOLLOW_SECONDS + 60))
    found, _ = chainstatus.status_alerts(slashing, settings, {}, timezone.now())
    assert not [f for f in found if f.kind == AlertKind.TOMBSTONED]


@pytest.mark.django_db
def test_a_counter_hovering_at_the_line_makes_one_alert(slashing):
    """24, 25, 24, 25, ... of 50 (a steady ~2.5% miss rate, or a load-balanced REST API whose nodes
    disagree): one alert, two messages at most, not one alert per read."""
    settings = AlertSettings.objects.create(chain=slashing)  # the default cool-down too
    rule = lambda open_alerts: chainstatus.status_alerts(slashing, settings, open_alerts, timezone.now())  # noqa: E731
    for counter in (24, 25, 24, 25, 24, 25, 24):
        set_status(slashing, missed_blocks_counter=counter)
        evaluate(slashing, rule)
    alerts = list(Alert.objects.filter(kind=AlertKind.JAIL_RISK))
    assert len(alerts) == 1 and alerts[0].is_open and events(alerts[0]) == ["opened"]


@pytest.mark.django_db
def test_a_stale_status_read_decides_nothing(slashing):
    settings = AlertSettings.objects.create(chain=slashing)
    old = timezone.now() - timedelta(seconds=chainstatus.STALE_SECONDS + 60)
    ValidatorStatus.objects.filter(validator_id=vid(slashing, A)).update(
        jailed=True, jailed_since=old, read_at=old, counters_read_at=old
    )
    assert chainstatus.status_alerts(slashing, settings, {}, timezone.now()) == ([], [])
    # Staking read fresh, slashing read failing for hours: the old counter decides nothing.
    ValidatorStatus.objects.filter(validator_id=vid(slashing, A)).update(
        jailed=False, read_at=timezone.now(), missed_blocks_counter=45
    )
    found, _ = chainstatus.status_alerts(slashing, settings, {}, timezone.now())
    assert not [f for f in found if f.kind == AlertKind.JAIL_RISK]
    assert chainstatus.jail_shares(chain_id=slashing.pk, now=timezone.now()) == {}


@pytest.mark.django_db
def test_left_the_set_then_rejoined_and_a_power_change(net):
    settings = AlertSettings.objects.create(chain=net, power_change_share=0.2, cooldown_seconds=0)
    NotificationChannel.objects.create(name="ops", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/hook")

    def rule(latest):
        return lambda open_alerts: chainstatus.set_alerts(net, settings, open_alerts, latest)

    apply_set(net.pk, 100, [Member(a, 10, i) for i, a in enumerate((A, B, C))])  # D leaves at 100
    apply_set(net.pk, 110, [Member(A, 10, 0), Member(B, 11, 1), Member(C, 20, 2)])  # B +10%, C +100%
    alerts = evaluate(net, rule(120))
    left = alerts[(AlertKind.LEFT_SET, vid(net, D))]
    assert left.summary == "left the active set at height 100"
    changed = alerts[(AlertKind.POWER_CHANGED, vid(net, C))]
    assert changed.summary == "voting power 10 -> 20 (+100%) at height 110"
    assert (AlertKind.POWER_CHANGED, vid(net, B)) not in alerts  # 10% is under the 20% asked
    apply_set(net.pk, 130, [Member(A, 10, 0), Member(B, 11, 1), Member(C, 20, 2), Member(D, 10, 3)])
    alerts = evaluate(net, rule(140))
    assert (AlertKind.LEFT_SET, vid(net, D)) not in alerts
    left.refresh_from_db()
    assert left.details["resolution"] == "rejoined the active set at height 130"
    assert events(left) == ["opened", "resolved"]
    # The change grows old: its alert resolves.
    later = 110 + chainstatus.RECENT_HEIGHTS + 5
    assert (AlertKind.POWER_CHANGED, vid(net, C)) not in evaluate(net, rule(later))


@pytest.mark.django_db
def test_jail_risk_figures_with_ctops_own_count_and_the_time_to_jail(slashing):
    """A misses heights 10..19 of the stored 10..59; the chain counts 12. ctop's count, the recent
    miss rate and the block time (6 s) come from what the analyzer judged."""
    from analysis.models import HeightVerdict
    from analysis.runner import MissingVoteAnalyzer

    start = timezone.now() - timedelta(seconds=600)
    for h in range(10, 60):
        votes = all_sign()
        if h < 20:
            del votes[0][A]
        play(slashing, h, votes, started=start + timedelta(seconds=6 * h))
    MissingVoteAnalyzer([slashing], fetch_sets=False, fetch_commits=False).run_once()
    judged = sorted(HeightVerdict.objects.filter(chain=slashing).values_list("height", flat=True))
    missed = [h for h in judged if h < 20]
    assert len(judged) > 40 and len(missed) >= 8  # what the analyzer judged of them
    set_status(slashing, missed_blocks_counter=12)
    risk = chainstatus.jail_risks(slashing, [vid(slashing, A)], judged[-1])[vid(slashing, A)]
    assert (risk.counter, risk.allowance, risk.window, risk.share) == (12, 50, 100, 0.24)
    assert (risk.ctop_missed, risk.ctop_heights) == (len(missed), len(judged))
    # 50 + 1 - 12 = 39 more misses, at len(missed) per len(judged) heights, of 6 s each.
    assert risk.seconds_to_jail == pytest.approx(39 / (len(missed) / len(judged)) * 6, rel=0.001)


@pytest.mark.django_db
def test_the_validator_page_shows_the_chains_word_and_says_why_when_it_cannot(slashing, user_client):
    set_status(slashing, missed_blocks_counter=30, tokens=5_000_000, commission=Decimal("0.05"))
    page = user_client.get(f"/chains/{slashing.name}/validators/{A}/").content.decode()
    assert "30 of 50 allowed misses" in page and "No REST endpoint" in page  # the test chain has no rest_url
    ValidatorStatus.objects.all().delete()
    slashing.rest_url = "http://127.0.0.1:9"
    slashing.save()
    ChainRestStatus.objects.filter(chain=slashing).update(last_error="staking validators not read: connection refused")
    page = user_client.get(f"/chains/{slashing.name}/validators/{A}/").content.decode()
    assert "The last read of the REST API failed" in page and "connection refused" in page
    assert "allowed misses" not in page


@pytest.mark.django_db
def test_the_chains_counter_escalates_a_missed_votes_alert_and_fills_the_watchlist(slashing, user_client):
    """With the chain's REST API read, a validator that has used 90% of its allowed misses (over
    critical_jail_risk, 80%) gets a critical missed-votes alert at its first few misses, before the
    25 missed heights; and the "my validators" panel shows that 90%."""
    from analysis.alerts import evaluate as evaluate_chain
    from analysis.models import WatchedValidator
    from analysis.runner import MissingVoteAnalyzer

    slashing.rest_url = "http://127.0.0.1:9"  # never read here: the status rows stand for its reply
    slashing.save()
    AlertSettings.objects.create(chain=slashing, consecutive_misses=3, grace_seconds=0)
    set_status(slashing, missed_blocks_counter=45)
    for h in range(10, 20):
        votes = all_sign()
        if h >= 14:
            del votes[0][A]
        play(slashing, h, votes)
    MissingVoteAnalyzer([slashing], fetch_sets=False, fetch_commits=False).run_once()
    evaluate_chain(slashing, timezone.now())
    alert = Alert.objects.get(chain=slashing, kind=AlertKind.MISSED_VOTES, is_open=True)
    assert alert.validator_id == vid(slashing, A) and alert.severity == Severity.CRITICAL
    WatchedValidator.objects.create(validator_id=vid(slashing, A))
    page = user_client.get("/").content.decode()
    assert ">90%</td>" in page
