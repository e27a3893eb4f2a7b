"""Notification transports against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analysis.lifecycle import raise_or_update, resolve
from analysis.models import AlertKind, ChannelKind, Notification, NotificationChannel, Severity
from analysis.notify import send_due

from .receivers import Receiver


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def channel(kind, target, **kw):
    n = NotificationChannel.objects.count()
    return NotificationChannel.objects.create(name=f"{kind}-{n}", kind=kind, target=target, **kw)


@pytest.mark.django_db
def test_webhook_on_open_and_resolve_exactly_once(chain, receiver):
    channel(ChannelKind.WEBHOOK, receiver.url + "/hook/secret-token-123")
    now = timezone.now()
    alert = raise_or_update(
        chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="stalled", height=7
    )
    raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="stalled", height=8)
    assert send_due() == 1
    assert send_due() == 0  # never repeated
    resolve(chain, AlertKind.STALLED, None, now=now, note="moving again")
    assert send_due() == 1
    events = [body["event"] for _, body in receiver.requests]
    assert events == ["opened", "resolved"]
    body = receiver.requests[0][1]
    assert (body["chain"], body["kind"], body["severity"], body["first_height"]) == (
        "testnet",
        "stalled",
        "critical",
        7,
    )
    assert Notification.objects.filter(alert=alert, status="sent").count() == 2


@pytest.mark.django_db
def test_transient_failures_retry_permanent_ones_stop(chain, receiver, caplog):
    flaky = channel(ChannelKind.SLACK, receiver.url + "/slack/T000/B000/XXXXSECRET")
    now = timezone.now()
    receiver.statuses = [503]
    raise_or_update(chain, AlertKind.HALT_RISK, None, now=now, severity=Severity.CRITICAL, summary="halt risk")
    now = timezone.now()
    assert send_due(now) == 0
    n = Notification.objects.get(channel=flaky)
    assert (n.status, n.attempts) == ("pending", 1)
    assert send_due(now + timedelta(seconds=10)) == 1  # the backoff has passed
    assert receiver.requests[-1][1]["text"].startswith("[ctop CRITICAL] testnet: halt risk")
    # A permanent failure (4xx): recorded on the channel, not retried.
    NotificationChannel.objects.filter(pk=flaky.pk).update(enabled=False)
    broken = channel(ChannelKind.DISCORD, receiver.url + "/discord/BADTOKEN")
    receiver.statuses = [404]
    raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="stalled")
    send_due(now + timedelta(seconds=20))
    failed = Notification.objects.get(channel=broken)
    assert failed.status == "failed"
    broken.refresh_from_db()
    assert "HTTP 404" in broken.last_error
    count = len(receiver.requests)
    send_due(now + timedelta(hours=2))
    assert len(receiver.requests) == count
    assert "XXXXSECRET" not in caplog.text and "BADTOKEN" not in caplog.text  # secrets never logged


@pytest.mark.django_db
def test_pagerduty_trigger_and_resolve_share_a_dedup_key_and_filters_apply(chain, receiver):
    channel(ChannelKind.PAGERDUTY, receiver.url + "/v2/enqueue", secret="routing-key-1")
    quiet = channel(ChannelKind.WEBHOOK, receiver.url + "/critical-only", min_severity=Severity.CRITICAL)
    now = timezone.now()
    raise_or_update(chain, AlertKind.MISSED_VOTES, None, now=now, severity=Severity.WARNING, summary="missed")
    resolve(chain, AlertKind.MISSED_VOTES, None, now=now)
    send_due()
    actions = [
        (b["event_action"], b["dedup_key"], b["routing_key"]) for p, b in receiver.requests if p == "/v2/enqueue"
    ]
    assert [a for a, _, _ in actions] == ["trigger", "resolve"]
    assert actions[0][1] == actions[1][1] and actions[0][2] == "routing-key-1"
    assert not Notification.objects.filter(channel=quiet).exists()  # below its minimum severity


@pytest.mark.django_db
def test_telegram_message(chain, receiver):
    channel(ChannelKind.TELEGRAM, "-100200300", secret="123:ABC", api_url=receiver.url)
    raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary="stalled")
    send_due()
    path, body = receiver.requests[0]
    assert path == "/bot123:ABC/sendMessage" and "stalled" in body["text"]
    assert body["chat_id"] == "-100200300"  # the chat id, never a piece of the token
