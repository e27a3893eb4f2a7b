"""What a notification says, whatever the channel: the chain, the validator (moniker and short
address), the kind, the heights, the severity, how long a resolved alert lasted, and a link to the
alert's page. analysis.formats renders it for each channel kind.

Every value here may come from a node or a REST API (monikers above all): each is made one bounded
line (common.text.one_line) before any channel escapes it for its own markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote

from django.conf import settings

from common.text import one_line

from .models import Alert, AlertKind, NotificationEvent, Severity

SHORT_ADDRESS = 8  # hex characters of a consensus address shown beside the moniker


def short_address(address: str) -> str:
    """The first 8 hex characters of a consensus address (uppercase, as stored)."""
    return one_line(address[:SHORT_ADDRESS].upper(), SHORT_ADDRESS)


def human_duration(delta: timedelta) -> str:
    """`42 s`, `14 min`, `3 h 5 min`, `2 d 4 h`: how long, at the precision a person needs."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def alert_link(alert: Alert) -> str | None:
    """The alert's page under CTOP_BASE_URL (validated in settings: http(s), no credentials), or
    None without one."""
    base = settings.CTOP.get("BASE_URL", "")
    if not base:
        return None
    return base.rstrip("/") + quote(alert.get_absolute_url(), safe="/")


@dataclass(frozen=True)
class Message:
    alert_id: int
    event: str
    severity: int  # the state this message announces (the alert's severity when it was queued)
    chain: str
    kind: str  # the alert kind's code, e.g. missed_votes
    kind_name: str  # ...and its name, e.g. missed votes
    moniker: str
    address: str
    summary: str
    first_height: int | None
    last_height: int | None
    since_height: int | None  # missed votes: the first height misses are counted from
    last_missed: int | None  # ...and the last height missed
    missed: int | None  # missed votes: heights missed since the alert opened
    lasted: timedelta | None  # resolved: how long the alert lasted
    note: str  # resolved: why
    link: str | None
    opened_at: str
    resolved_at: str | None

    @property
    def severity_name(self) -> str:
        return Severity(self.severity).label if self.severity in Severity.values else str(self.severity)

    @property
    def mark(self) -> str:
        return "RESOLVED" if self.event == NotificationEvent.RESOLVED else self.severity_name.upper()

    @property
    def short_address(self) -> str:
        return short_address(self.address) if self.address else ""

    @property
    def validator(self) -> str:
        """`moniker (ABCDEF12)`, or the short address alone for a validator without a moniker."""
        if not self.address:
            return ""
        return f"{self.moniker} ({self.short_address})" if self.moniker else self.short_address

    @property
    def subject(self) -> str:
        """One line naming the state, the kind, the chain and the validator."""
        who = f": {self.validator}" if self.validator else ""
        tail = ""
        if self.event == NotificationEvent.ESCALATED:
            tail = f", escalated to {self.severity_name}"
        elif self.event == NotificationEvent.RESOLVED and self.lasted is not None:
            tail = f", lasted {human_duration(self.lasted)}"
        return f"[ctop {self.mark}] {self.kind_name} on {self.chain}{who}{tail}"

    @property
    def detail(self) -> str:
        if self.event != NotificationEvent.RESOLVED:
            return self.summary
        lasted = f"resolved after {human_duration(self.lasted)}" if self.lasted is not None else "resolved"
        return f"{lasted}: {self.note}" if self.note else lasted

    @property
    def heights(self) -> str:
        """`heights 101-125: 25 missed` for missed votes; the heights involved for other kinds."""
        if self.missed is not None and self.since_height is not None:
            last = self.last_missed if self.last_missed is not None else self.since_height
            span = f"height {last}" if last == self.since_height else f"heights {self.since_height}-{last}"
            return f"{span}: {self.missed} missed"
        first, last = self.first_height, self.last_height
        if first is None and last is None:
            return ""
        if first is None or last is None or first == last:
            return f"height {first if first is not None else last}"
        return f"heights {min(first, last)}-{max(first, last)}"

    def lines(self) -> list[str]:
        """The plain-text message: subject, what happened, the heights, the link."""
        return [line for line in (self.subject, self.detail, self.heights, self.link or "") if line]

    def text(self) -> str:
        return "\n".join(self.lines())


def compose(alert: Alert, event: str, severity: int | None = None) -> Message:
    """The message for `event` of `alert`, announcing `severity` (default: the alert's now)."""
    validator = alert.validator if alert.validator_id else None
    details = alert.details or {}
    counted = alert.kind == AlertKind.MISSED_VOTES and isinstance(details.get("missed"), int)
    resolved = event == NotificationEvent.RESOLVED and alert.resolved_at is not None
    return Message(
        alert_id=alert.pk,
        event=event,
        severity=severity if severity is not None else alert.severity,
        chain=one_line(alert.chain.name, 64),
        kind=alert.kind,
        kind_name=alert.get_kind_display(),
        moniker=one_line(validator.moniker, 64) if validator else "",
        address=one_line(validator.address, 64) if validator else "",
        summary=one_line(alert.summary, 255),
        first_height=alert.first_height,
        last_height=alert.last_height,
        since_height=details.get("since_height") if counted else None,
        last_missed=details.get("last_missed", alert.last_height) if counted else None,
        missed=details["missed"] if counted else None,
        lasted=alert.resolved_at - alert.opened_at if resolved else None,
        note=one_line(details.get("resolution", ""), 200) if resolved else "",
        link=alert_link(alert),
        opened_at=alert.opened_at.isoformat(),
        resolved_at=alert.resolved_at.isoformat() if alert.resolved_at else None,
    )


def payload(m: Message) -> dict:
    """The generic webhook's JSON (and PagerDuty's custom details): every fact, unescaped."""
    return {
        "event": m.event,
        "chain": m.chain,
        "kind": m.kind,
        "severity": m.severity_name,
        "summary": m.summary,
        "validator": m.address or None,
        "validator_moniker": m.moniker or None,
        "validator_short": m.short_address or None,
        "first_height": m.first_height,
        "last_height": m.last_height,
        "missed_heights": m.missed,
        "since_height": m.since_height,
        "opened_at": m.opened_at,
        "resolved_at": m.resolved_at,
        "lasted_seconds": int(m.lasted.total_seconds()) if m.lasted is not None else None,
        "url": m.link,
        "text": m.text(),
        "alert_id": m.alert_id,
    }
