"""The alert lifecycle, in one place: rules say what holds (findings) and what is known to be clear;
this module opens, updates and resolves alerts accordingly, and queues their notifications.

An alert opens once when its condition starts, is updated while it lasts, and resolves when it
ends. A partial unique constraint on open alerts makes a restart or a second analyzer harmless:
whoever comes second updates the open alert instead of duplicating it. Conditions that flap (ctop
blind, a stalled chain) resolve only after staying clear for the chain's cool-down, so ten flips
make one alert and two messages, not ten alerts and twenty. An alert whose severity rises while it
lasts (a missed-votes alert reaching its critical threshold) is escalated: one more message per
step up, never a second one for the same state (analysis.models.Notification).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction

from common.text import one_line
from consensus.models import Chain

from .models import Alert, NotificationEvent
from .notify import enqueue

# (kind, validator id or None) -> the open alert
OpenAlerts = dict[tuple[str, int | None], Alert]


@dataclass(frozen=True)
class Finding:
    """A condition that holds now."""

    kind: str
    validator_id: int | None
    severity: int
    summary: str
    height: int | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Clear:
    """A condition known not to hold now (an open alert for it may resolve, after the cool-down)."""

    kind: str
    validator_id: int | None
    note: str
    cooldown: float = 0.0  # seconds it must stay clear before the alert resolves
    details: dict = field(default_factory=dict)  # merged into the alert's details when it resolves


def raise_or_update(
    chain: Chain,
    kind: str,
    validator_id: int | None,
    *,
    now: datetime,
    severity: int,
    summary: str,
    height: int | None = None,
    details: dict | None = None,
    open_alerts: OpenAlerts | None = None,
) -> Alert:
    summary = one_line(summary, 255)  # it reaches pages, mail subjects and chat messages
    for attempt in range(2):
        if open_alerts is not None and attempt == 0:
            alert = open_alerts.get((kind, validator_id))  # the open alerts, loaded once per tick
        else:
            alert = Alert.objects.filter(chain=chain, kind=kind, validator_id=validator_id, is_open=True).first()
        if alert is not None:
            escalated = severity > alert.severity
            alert.count += 1
            alert.updated_at = now
            alert.severity = max(alert.severity, severity)
            alert.summary = summary
            alert.last_height = height if height is not None else alert.last_height
            merged = {**alert.details, **(details or {})}
            merged.pop("clear_since", None)  # it holds again: a cool-down under way starts over
            alert.details = merged
            # The new severity and its message together: a crash between the two cannot lose the
            # escalation (the next tick sees the old severity and escalates again).
            with transaction.atomic():
                alert.save()
                if escalated:
                    enqueue(alert, NotificationEvent.ESCALATED)
            return alert
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    chain=chain,
                    kind=kind,
                    validator_id=validator_id,
                    severity=severity,
                    opened_at=now,
                    updated_at=now,
                    first_height=height,
                    last_height=height,
                    summary=summary,
                    details=details or {},
                )
                enqueue(alert, NotificationEvent.OPENED)
                if open_alerts is not None:
                    open_alerts[(kind, validator_id)] = alert
                return alert
        except IntegrityError:
            continue  # another analyzer opened it a moment ago: update that one
    raise RuntimeError("could not open or update the alert")  # pragma: no cover


def resolve(
    chain: Chain,
    kind: str,
    validator_id: int | None,
    *,
    now: datetime,
    note: str = "",
    details: dict | None = None,
    open_alerts: OpenAlerts | None = None,
) -> Alert | None:
    if open_alerts is not None:
        alert = open_alerts.pop((kind, validator_id), None)
    else:
        alert = Alert.objects.filter(chain=chain, kind=kind, validator_id=validator_id, is_open=True).first()
    if alert is None:
        return None
    alert.is_open = False
    alert.resolved_at = alert.updated_at = now
    merged = {k: v for k, v in {**alert.details, **(details or {})}.items() if k != "clear_since"}
    if note:
        merged["resolution"] = one_line(note, 255)
    alert.details = merged
    with transaction.atomic():
        alert.save()
        enqueue(alert, NotificationEvent.RESOLVED)
    return alert


def apply(chain: Chain, now: datetime, findings: list[Finding], clears: list[Clear], open_alerts: OpenAlerts) -> None:
    """Make the alerts say what the rules found."""
    for f in findings:
        raise_or_update(
            chain,
            f.kind,
            f.validator_id,
            now=now,
            severity=f.severity,
            summary=f.summary,
            height=f.height,
            details=f.details,
            open_alerts=open_alerts,
        )
    for c in clears:
        alert = open_alerts.get((c.kind, c.validator_id))
        if alert is None:
            continue
        if c.cooldown > 0:
            since = alert.details.get("clear_since")
            if since is None:
                alert.details = {**alert.details, "clear_since": now.isoformat()}
                alert.save(update_fields=["details"])
                continue
            if (now - datetime.fromisoformat(since)).total_seconds() < c.cooldown:
                continue
        resolve(chain, c.kind, c.validator_id, now=now, note=c.note, details=c.details, open_alerts=open_alerts)
