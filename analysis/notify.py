"""Notifications: one message when an alert opens, one each time it escalates and one when it
resolves, per matching channel. What a message says is analysis.messages; how each channel kind
shows it, analysis.formats.

Queued as Notification rows (a channel never gets the same state of an alert twice), delivered with
retries and backoff for transient failures; a permanent failure (HTTP 4xx) is recorded on the
channel and not retried. Whatever goes wrong while sending (a receiver that drips, a refused
header, a bug) ends as a failed attempt of that notification, never as a crashed process. Every
call has a total deadline. Secrets are never logged: errors name the channel, not its URL or token.

Delivery runs off the judging path (the Notifier's own threads, one job per channel at a time), so
a slow receiver delays neither verdicts nor the other channels.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.core.mail import send_mail
from django.db import IntegrityError, close_old_connections, connections, transaction
from django.utils import timezone

from common import http
from common.backoff import exponential
from common.pool import KeyedPool
from common.text import one_line

from . import formats
from .channels import channels_for
from .formats import slack_text  # noqa: F401 (the name tests and callers have used)
from .messages import Message, compose, payload
from .models import Alert, ChannelKind, Notification, NotificationChannel, NotificationStatus

log = logging.getLogger("ctop.notify")

MAX_ATTEMPTS = 8
DEADLINE = 10.0  # seconds for one delivery, whatever the receiver does
TELEGRAM_API = "https://api.telegram.org"
PAGERDUTY_EVENTS = "https://events.pagerduty.com/v2/enqueue"


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent


def enqueue(alert: Alert, event: str) -> int:
    """Queue `event` ("opened", "escalated" or "resolved") of `alert`, at its severity now, for every
    matching channel (analysis.channels: chains, minimum severity, validator scope)."""
    queued = 0
    for channel in channels_for(alert):
        try:
            with transaction.atomic():
                Notification.objects.create(
                    alert=alert, channel=channel, event=event, severity=alert.severity, next_attempt_at=timezone.now()
                )
                queued += 1
        except IntegrityError:
            pass  # this state already queued (a restart, a second analyzer): never twice
    return queued


# --- transports: one per channel kind ---


def _post(url: str, body: dict) -> None:
    try:
        response = http.post(url, json=body, deadline=DEADLINE, max_bytes=64 * 1024)
    except http.HTTPError as exc:
        raise DeliveryError(
            "timed out" if exc.timeout else "cannot connect or reply refused", permanent=False
        ) from None
    if 400 <= response.status < 500 and response.status != 429:
        raise DeliveryError(f"HTTP {response.status}", permanent=True)
    if response.status >= 300:
        raise DeliveryError(f"HTTP {response.status}", permanent=False)


def _webhook(channel: NotificationChannel, m: Message) -> None:
    _post(channel.target, payload(m))


def _slack(channel: NotificationChannel, m: Message) -> None:
    _post(channel.target, formats.slack(m))


def _discord(channel: NotificationChannel, m: Message) -> None:
    _post(channel.target, formats.discord(m))


def _telegram(channel: NotificationChannel, m: Message) -> None:
    base = (channel.api_url or TELEGRAM_API).rstrip("/")
    _post(f"{base}/bot{channel.secret}/sendMessage", {"chat_id": channel.target, **formats.telegram(m)})


def _pagerduty(channel: NotificationChannel, m: Message) -> None:
    _post(channel.target or PAGERDUTY_EVENTS, formats.pagerduty(m, channel.secret))


def _email(channel: NotificationChannel, m: Message) -> None:
    subject, body = formats.email(m)
    try:
        # From: DEFAULT_FROM_EMAIL; the server and its credentials: EMAIL_URL (settings).
        send_mail(subject, body, None, [channel.target], fail_silently=False)
    except OSError as exc:
        raise DeliveryError(f"mail: {type(exc).__name__}", permanent=False) from None


TRANSPORTS: dict[str, Callable[[NotificationChannel, Message], None]] = {
    ChannelKind.WEBHOOK: _webhook,
    ChannelKind.SLACK: _slack,
    ChannelKind.DISCORD: _discord,
    ChannelKind.TELEGRAM: _telegram,
    ChannelKind.PAGERDUTY: _pagerduty,
    ChannelKind.EMAIL: _email,
}


def deliver(channel: NotificationChannel, message: Message) -> None:
    transport = TRANSPORTS.get(channel.kind)
    if transport is None:
        raise DeliveryError(f"unknown channel kind {channel.kind!r}", permanent=True)
    try:
        transport(channel, message)
    except DeliveryError:
        raise
    except Exception as exc:  # a bug or a refused header must fail this attempt, not the process
        log.exception("notification via channel %r: unexpected error", channel.name)
        raise DeliveryError(f"unexpected {type(exc).__name__}", permanent=False) from None


# --- sending ---


# Deliveries by (channel kind, "sent" | "failed") since the process started: the analyzer's
# --metrics-port reads them (ctop_notifications_total).
DELIVERIES: Counter[tuple[str, str]] = Counter()
_DELIVERIES_LOCK = threading.Lock()


def _count(kind: str, result: str) -> None:
    with _DELIVERIES_LOCK:
        DELIVERIES[(kind, result)] += 1


def send_due(now=None, *, channel_id: int | None = None, limit: int = 200) -> int:
    """Deliver every due notification (of one channel, or all) once; returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    due = Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
    if channel_id is not None:
        due = due.filter(channel_id=channel_id)
    for n in due.select_related("alert__chain", "alert__validator", "channel").order_by("id")[:limit]:
        # Claim it: a second sender skips a notification someone else is sending.
        if not Notification.objects.filter(pk=n.pk, status=NotificationStatus.PENDING, attempts=n.attempts).update(
            attempts=n.attempts + 1, next_attempt_at=now + timedelta(minutes=5)
        ):
            continue
        try:
            # The state it was queued for: an opening sent after an escalation still says warning.
            deliver(n.channel, compose(n.alert, n.event, n.severity))
        except DeliveryError as exc:
            _count(n.channel.kind, "failed")
            final = exc.permanent or n.attempts + 1 >= MAX_ATTEMPTS
            delay = timedelta(seconds=exponential(n.attempts + 1, base=5, cap=3600, jitter=False))
            Notification.objects.filter(pk=n.pk).update(
                status=NotificationStatus.FAILED if final else NotificationStatus.PENDING,
                error=str(exc),
                next_attempt_at=now + delay,
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
        Notification.objects.filter(pk=n.pk).update(status=NotificationStatus.SENT, sent_at=now, error="")
        _count(n.channel.kind, "sent")
        sent += 1
    return sent


class Notifier:
    """Sends due notifications in the background: every `interval` seconds (or when woken), each
    channel with something due gets a job in the pool, one at a time per channel."""

    def __init__(self, *, workers: int = 4, interval: float = 2.0) -> None:
        self.pool = KeyedPool(workers, "notify")
        self.interval = interval
        self.stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="notifier", daemon=True)

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                close_old_connections()
                due = (
                    Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=timezone.now())
                    .values_list("channel_id", flat=True)
                    .distinct()
                )
                for channel_id in list(due):
                    self.pool.submit(
                        channel_id, lambda c=channel_id: send_due(channel_id=c), what=f"channel {channel_id}"
                    )
            except Exception as exc:  # the database away: try again next time
                log.warning("notifications not sent this round: %s", one_line(exc))
            self._wake.wait(self.interval)
            self._wake.clear()
        connections.close_all()

    def close(self, timeout: float = 5.0) -> None:
        self.stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.pool.wait(timeout)
        self.pool.shutdown(wait=False)
