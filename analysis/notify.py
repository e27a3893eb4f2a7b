"""Notifications: one message when an alert opens and one when it resolves, per matching channel.

Queued as Notification rows (unique per alert, channel and event: never sent twice), delivered with
retries and backoff for transient failures; a permanent failure (HTTP 4xx) is recorded on the
channel and not retried. Secrets are never logged: errors name the channel, not its URL or token.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import requests
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import Alert, ChannelKind, Notification, NotificationChannel

log = logging.getLogger("ctop.notify")

MAX_ATTEMPTS = 8


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def enqueue(alert: Alert, event: str) -> int:
    """Queue `event` ("opened" or "resolved") of `alert` for every matching channel."""
    channels = (
        NotificationChannel.objects.filter(enabled=True, min_severity__lte=alert.severity)
        .filter(Q(chains__isnull=True) | Q(chains=alert.chain_id))
        .distinct()
    )
    queued = 0
    for channel in channels:
        try:
            with transaction.atomic():
                Notification.objects.create(alert=alert, channel=channel, event=event, next_attempt_at=timezone.now())
                queued += 1
        except IntegrityError:
            pass  # already queued (a restart, a second analyzer): never twice
    return queued


def payload(alert: Alert, event: str) -> dict:
    return {
        "event": event,
        "chain": alert.chain.name,
        "kind": alert.kind,
        "severity": alert.get_severity_display(),
        "summary": alert.summary,
        "validator": alert.validator.address if alert.validator_id else None,
        "first_height": alert.first_height,
        "last_height": alert.last_height,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "alert_id": alert.pk,
    }


def _text(alert: Alert, event: str) -> str:
    mark = "RESOLVED" if event == "resolved" else alert.get_severity_display().upper()
    return f"[ctop {mark}] {alert.chain.name}: {alert.summary}"


def _post(url: str, body: dict, timeout: float = 10.0) -> None:
    try:
        response = requests.post(url, json=body, timeout=timeout)
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}", permanent=False) from None
    if 400 <= response.status_code < 500 and response.status_code != 429:
        raise DeliveryError(f"HTTP {response.status_code}", permanent=True)
    if response.status_code >= 300:
        raise DeliveryError(f"HTTP {response.status_code}", permanent=False)


def deliver(channel: NotificationChannel, alert: Alert, event: str) -> None:
    kind = channel.kind
    if kind == ChannelKind.WEBHOOK:
        _post(channel.target, payload(alert, event))
    elif kind in (ChannelKind.SLACK,):
        _post(channel.target, {"text": _text(alert, event)})
    elif kind == ChannelKind.DISCORD:
        _post(channel.target, {"content": _text(alert, event)})
    elif kind == ChannelKind.TELEGRAM:
        base = channel.target if channel.target.startswith("http") else "https://api.telegram.org"
        chat = channel.target if not channel.target.startswith("http") else channel.secret.split(":", 1)[-1]
        _post(f"{base}/bot{channel.secret}/sendMessage", {"chat_id": chat, "text": _text(alert, event)})
    elif kind == ChannelKind.PAGERDUTY:
        _post(
            channel.target or "https://events.pagerduty.com/v2/enqueue",
            {
                "routing_key": channel.secret,
                "event_action": "resolve" if event == "resolved" else "trigger",
                "dedup_key": f"ctop-{alert.pk}",  # trigger and resolve address the same incident
                "payload": {
                    "summary": _text(alert, event)[:1024],
                    "source": alert.chain.name,
                    "severity": "critical" if alert.severity >= 30 else "warning",
                    "custom_details": payload(alert, event),
                },
            },
        )
    elif kind == ChannelKind.EMAIL:
        try:
            send_mail(_text(alert, event), str(payload(alert, event)), None, [channel.target])
        except OSError as exc:
            raise DeliveryError(f"mail: {type(exc).__name__}", permanent=False) from None
    else:  # pragma: no cover
        raise DeliveryError(f"unknown channel kind {kind!r}", permanent=True)


def send_due(now=None) -> int:
    """Deliver every due notification once; returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    due = Notification.objects.filter(status="pending", next_attempt_at__lte=now).select_related(
        "alert__chain", "alert__validator", "channel"
    )
    for n in due[:200]:
        # Claim it: a second sender skips a notification someone else is sending.
        if not Notification.objects.filter(pk=n.pk, status="pending", attempts=n.attempts).update(
            attempts=n.attempts + 1, next_attempt_at=now + timedelta(minutes=5)
        ):
            continue
        try:
            deliver(n.channel, n.alert, n.event)
        except DeliveryError as exc:
            final = exc.permanent or n.attempts + 1 >= MAX_ATTEMPTS
            delay = timedelta(seconds=min(3600, 5 * 2**n.attempts))
            Notification.objects.filter(pk=n.pk).update(
                status="failed" if final else "pending", error=str(exc), next_attempt_at=now + delay
            )
            if exc.permanent:
                NotificationChannel.objects.filter(pk=n.channel_id).update(
                    last_error=f"{exc} for alert {n.alert_id}", last_error_at=now
                )
            log.warning(
                "notification %s via channel %r failed (%s)%s",
                n.pk,
                n.channel.name,
                exc,
                "" if final else f"; retrying in {delay.total_seconds():.0f}s",
            )
            continue
        Notification.objects.filter(pk=n.pk).update(status="sent", sent_at=now, error="")
        sent += 1
    return sent
