"""Which notification channels an alert goes to: the one place that decides (notify.enqueue asks).

A channel takes an alert when it is enabled, the alert is at least its minimum severity, the
alert's chain is one of its chains (none listed: every chain), and, for an alert about one
validator, that validator is in its scope: any validator, the watched ones (WatchedValidator), or
the ones chosen on the channel. An alert about a whole chain (halt risk, stalled, ctop blind, many
validators missing votes) has no validator and ignores the scope: a team that watches only its own
validators still needs to hear that the chain they validate has stopped. A channel that was told an
alert opened is told it resolved, whatever changed in between (a validator unwatched, a filter edited),
as long as it is enabled: no incident is left open at the receiver.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from .models import Alert, Notification, NotificationChannel, ValidatorScope, WatchedValidator


def channels_for(alert: Alert) -> QuerySet[NotificationChannel]:
    """The channels `alert` is queued for, in one query when iterated."""
    # Subqueries rather than joins: two many-to-many joins would multiply the rows.
    listed = NotificationChannel.chains.through.objects.filter(notificationchannel_id=OuterRef("pk"))
    matches = Q(min_severity__lte=alert.severity) & (~Exists(listed) | Exists(listed.filter(chain_id=alert.chain_id)))
    if alert.validator_id is not None:
        chosen = NotificationChannel.validators.through.objects.filter(
            notificationchannel_id=OuterRef("pk"), validator_id=alert.validator_id
        )
        watched = WatchedValidator.objects.filter(validator_id=alert.validator_id)
        matches &= (
            Q(validator_scope=ValidatorScope.ALL)
            | (Q(validator_scope=ValidatorScope.WATCHED) & Exists(watched))
            | (Q(validator_scope=ValidatorScope.CHOSEN) & Exists(chosen))
        )
    told = Notification.objects.filter(alert_id=alert.pk, channel_id=OuterRef("pk"))
    return NotificationChannel.objects.filter(Q(enabled=True) & (matches | Exists(told)))
