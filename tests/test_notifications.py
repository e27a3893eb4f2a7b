"""Notification transports against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analysis.lifecycle import raise_or_update, resolve
from analysis.models import AlertKind, ChannelKind, Notification, NotificationChannel, Severity
from analysis.notify import send_due


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
    assert receiver.requests[-1][1]["text"].startswith("[ctop CRITICAL] halt risk on testnet")
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
    send_due()
    assert not Notification.objects.filter(channel=quiet).exists()  # below its minimum severity
    raise_or_update(chain, AlertKind.MISSED_VOTES, None, now=now, severity=Severity.CRITICAL, summary="missed")
    resolve(chain, AlertKind.MISSED_VOTES, None, now=now)
    send_due()
    sent = [b for p, b in receiver.requests if p == "/v2/enqueue"]
    # The escalation triggers again under the same dedup key: PagerDuty adds it to the same incident.
    assert [(b["event_action"], b["payload"]["severity"]) for b in sent] == [
        ("trigger", "warning"),
        ("trigger", "critical"),
        ("resolve", "critical"),
    ]
    assert {b["dedup_key"] for b in sent} == {sent[0]["dedup_key"]} and sent[0]["routing_key"] == "routing-key-1"
    assert list(Notification.objects.filter(channel=quiet).values_list("event", flat=True).order_by("id")) == [
        "escalated",
        "resolved",
    ]


@pytest.mark.django_db
def test_telegram_message(chain, receiver):
    channel(ChannelKind.TELEGRAM, "-100200300", secret="123:ABC", api_url=receiver.url)
    raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary="stalled")
    send_due()
    path, body = receiver.requests[0]
    assert path == "/bot123:ABC/sendMessage" and "stalled" in body["text"] and body["parse_mode"] == "HTML"
    assert body["chat_id"] == "-100200300"  # the chat id, never a piece of the token


@pytest.mark.django_db
def test_email_has_the_documented_shape(chain, settings):
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "ctop@example.com"
    channel(ChannelKind.EMAIL, "ops@example.com")
    raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary="stuck")
    assert send_due() == 1
    (message,) = mail.outbox
    assert (message.from_email, message.to) == ("ctop@example.com", ["ops@example.com"])
    assert message.subject == "[ctop CRITICAL] stalled chain on testnet"
    assert message.body.splitlines()[0] == message.subject and "kind: stalled" in message.body
    assert "chain: testnet" in message.body and "{" not in message.body  # text, not a Python dict
    assert "url:" not in message.body and "/alerts/" not in message.body  # no CTOP_BASE_URL: no link


@pytest.mark.django_db
def test_a_channel_limited_to_a_chain_gets_only_that_chain(chain, receiver):
    from consensus.models import Chain

    other = Chain.objects.create(name="other", chain_id="o-1")
    only_other = channel(ChannelKind.WEBHOOK, receiver.url + "/other")
    only_other.chains.add(other)
    now = timezone.now()
    raise_or_update(chain, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="testnet stuck")
    raise_or_update(other, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="other stuck")
    assert send_due() == 1
    assert [body["chain"] for _, body in receiver.requests] == ["other"]


@pytest.mark.django_db
def test_discord_payload_has_the_documented_shape(chain, receiver):
    # https://discord.com/developers/docs/resources/webhook#execute-webhook: content (<= 2000
    # characters), embeds (a description <= 4096) and allowed_mentions; nothing unknown is sent.
    channel(ChannelKind.DISCORD, receiver.url + "/api/webhooks/1/token")
    raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary="x" * 3000)
    send_due()
    ((path, body),) = receiver.requests
    assert path == "/api/webhooks/1/token" and set(body) == {"content", "embeds", "allowed_mentions"}
    assert isinstance(body["content"], str) and 0 < len(body["content"]) <= 2000
    (embed,) = body["embeds"]
    assert 0 < len(embed["description"]) <= 4096 and len(embed["title"]) <= 256
    assert body["allowed_mentions"] == {"parse": []}
