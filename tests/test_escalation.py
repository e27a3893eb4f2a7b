"""Escalation (issue 16 §3): a missed-votes alert opens as a warning, escalates to critical at 25
heights missed (or a jail-risk share), and resolves saying how long it lasted and how many heights
were missed; each state is one message per channel, never two."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from analysis.escalation import missed_votes_severity
from analysis.lifecycle import raise_or_update, resolve
from analysis.models import (
    Alert,
    AlertKind,
    AlertSettings,
    ChannelKind,
    Notification,
    NotificationChannel,
    NotificationEvent,
    Severity,
)
from analysis.notify import enqueue, send_due
from analysis.runner import MissingVoteAnalyzer
from consensus.models import Validator

from .analysishelpers import A, B, C, D, play

BASE = "https://ctop.example.com/team"


@pytest.fixture
def base_url(settings):
    settings.CTOP = {**settings.CTOP, "BASE_URL": BASE}


def test_the_escalation_decision_takes_missed_heights_and_a_jail_risk():
    s = AlertSettings()  # the defaults: 25 heights, 80% of the slashing window's allowance
    assert (s.critical_missed_heights, s.critical_jail_risk) == (25, 0.8)
    assert missed_votes_severity(2, None, s) == Severity.WARNING
    assert missed_votes_severity(24, None, s) == Severity.WARNING
    assert missed_votes_severity(25, None, s) == Severity.CRITICAL
    # Whichever comes first: a jail risk escalates an alert with few misses.
    assert missed_votes_severity(3, 0.79, s) == Severity.WARNING
    assert missed_votes_severity(3, 0.8, s) == Severity.CRITICAL
    assert missed_votes_severity(3, None, s) == Severity.WARNING  # unknown never escalates
    off = AlertSettings(critical_missed_heights=0, critical_jail_risk=0)
    assert missed_votes_severity(10_000, 1.0, off) == Severity.WARNING


@pytest.mark.django_db
def test_the_rule_escalates_on_a_jail_risk_when_one_is_given(net):
    from analysis import rules
    from analysis.models import HeightVerdict

    from .analysishelpers import vid

    all_up(net, [98, 99])
    d_down(net, range(100, 103))
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES, is_open=True)
    open_alerts = {(alert.kind, alert.validator_id): alert}
    latest = HeightVerdict.objects.filter(chain=net).order_by("-height").values_list("height", flat=True)[0]
    s = AlertSettings(chain=net)
    d = vid(net, D)
    for risk, severity in ((None, Severity.WARNING), ({d: 0.2}, Severity.WARNING), ({d: 0.85}, Severity.CRITICAL)):
        (finding,), _ = rules.missed_votes(net, s, open_alerts, latest, jail_risk=risk)
        assert (finding.validator_id, finding.details["missed"], finding.severity) == (d, 2, severity)


def analyze(chain) -> None:
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()


def d_down(chain, heights) -> None:
    for h in heights:
        play(chain, h, {0: {a: ("S", "S") for a in (A, B, C)}})


def all_up(chain, heights) -> None:
    for h in heights:
        play(chain, h, {0: {a: ("S", "S") for a in (A, B, C, D)}})


def sent(receiver, path: str) -> list[dict]:
    return [body for p, body in receiver.requests if p == path]


@pytest.mark.django_db
def test_missed_votes_open_escalate_and_resolve_with_one_message_each(net, receiver, base_url):
    Validator.objects.filter(chain=net, address=D).update(moniker="val-d")
    NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target=receiver.url + "/hook")
    NotificationChannel.objects.create(
        name="pager", kind=ChannelKind.WEBHOOK, target=receiver.url + "/pager", min_severity=Severity.CRITICAL
    )
    # Open: D missed 100 and 101 (2 in a row): a warning.
    all_up(net, [98, 99])  # the first height ctop saw is not judged (it may have joined it late)
    d_down(net, range(100, 103))  # the newest height is in progress, not judged yet
    analyze(net)
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES, is_open=True)
    assert alert.severity == Severity.WARNING and alert.details["missed"] == 2
    assert send_due() == 1  # the critical-only channel hears nothing of a warning
    link = f"{BASE}/alerts/{alert.pk}/"
    (opened,) = sent(receiver, "/hook")
    assert opened["text"] == (
        "[ctop WARNING] missed votes on testnet: val-d (DDDDDDDD)\n"
        "missed votes in 2 of the last 3 heights (2 in a row, solo)\n"
        f"heights 100-101: 2 missed\n{link}"
    )
    assert (opened["event"], opened["severity"], opened["validator_short"], opened["url"]) == (
        "opened",
        "warning",
        "DDDDDDDD",
        link,
    )
    # Escalate: 25 heights missed since it opened (100..124).
    d_down(net, range(103, 126))
    analyze(net)
    alert.refresh_from_db()
    assert alert.severity == Severity.CRITICAL and alert.details["missed"] == 25
    assert send_due() == 2  # one escalation, to each channel
    (escalated,) = sent(receiver, "/hook")[1:]
    assert escalated["text"] == (
        "[ctop CRITICAL] missed votes on testnet: val-d (DDDDDDDD), escalated to critical\n"
        "missed votes in 20 of the last 20 heights (20 in a row, solo)\n"
        f"heights 100-124: 25 missed\n{link}"
    )
    assert sent(receiver, "/pager")[0]["event"] == "escalated"
    # Still down, still critical: nothing new (the same state is never sent twice).
    d_down(net, range(126, 128))
    analyze(net)
    assert send_due() == 0
    # Resolve: D signs again until its misses leave the window; 14 minutes after it opened.
    Alert.objects.filter(pk=alert.pk).update(opened_at=timezone.now() - timedelta(minutes=14, seconds=5))
    all_up(net, range(128, 146))
    analyze(net)
    alert.refresh_from_db()
    assert not alert.is_open and alert.details["missed"] == 28
    assert send_due() == 2
    resolved = sent(receiver, "/hook")[2]
    assert resolved["text"] == (
        "[ctop RESOLVED] missed votes on testnet: val-d (DDDDDDDD), lasted 14 min\n"
        "resolved after 14 min: signed the last 5 heights\n"
        f"heights 100-127: 28 missed\n{link}"
    )
    assert resolved["lasted_seconds"] >= 14 * 60 and resolved["missed_heights"] == 28
    analyze(net)
    assert send_due() == 0
    states = list(
        Notification.objects.filter(alert=alert)
        .order_by("channel__name", "id")
        .values_list("channel__name", "event", "severity", "status")
    )
    assert states == [
        ("hook", "opened", Severity.WARNING, "sent"),
        ("hook", "escalated", Severity.CRITICAL, "sent"),
        ("hook", "resolved", Severity.CRITICAL, "sent"),
        ("pager", "escalated", Severity.CRITICAL, "sent"),
        ("pager", "resolved", Severity.CRITICAL, "sent"),
    ]


@pytest.mark.django_db
def test_an_opening_sent_after_the_escalation_still_says_warning(chain, receiver):
    NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target=receiver.url + "/hook")
    now = timezone.now()
    raise_or_update(chain, AlertKind.MISSED_VOTES, None, now=now, severity=Severity.WARNING, summary="m")
    raise_or_update(chain, AlertKind.MISSED_VOTES, None, now=now, severity=Severity.CRITICAL, summary="m")
    assert send_due() == 2  # both queued before either was sent: each says its own state
    assert [(b["event"], b["severity"]) for _, b in receiver.requests] == [
        ("opened", "warning"),
        ("escalated", "critical"),
    ]
    assert receiver.requests[0][1]["text"].startswith("[ctop WARNING] missed votes on testnet\n")


@pytest.mark.django_db
def test_no_channel_gets_the_same_state_twice_on_a_restart_or_a_second_analyzer(chain):
    hook = NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/h")
    now = timezone.now()
    alert = raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.WARNING, summary="s")
    raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="s")
    # A second analyzer that also saw it a warning escalates it again: nothing more is queued.
    assert enqueue(alert, NotificationEvent.ESCALATED) == 0
    raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="s")
    resolve(chain, AlertKind.STALLED, None, now=now)
    assert enqueue(Alert.objects.get(pk=alert.pk), NotificationEvent.RESOLVED) == 0
    assert list(Notification.objects.order_by("id").values_list("event", "severity")) == [
        ("opened", Severity.WARNING),
        ("escalated", Severity.CRITICAL),
        ("resolved", Severity.CRITICAL),
    ]
    # The database itself refuses a second message announcing a state already announced.
    other = raise_or_update(chain, AlertKind.HALT_RISK, None, now=now, severity=Severity.CRITICAL, summary="h")
    for event in (NotificationEvent.ESCALATED, NotificationEvent.OPENED):
        with pytest.raises(IntegrityError), transaction.atomic():
            Notification.objects.create(
                alert=other, channel=hook, event=event, severity=Severity.CRITICAL, next_attempt_at=now
            )
