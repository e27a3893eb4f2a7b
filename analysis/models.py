"""What the analyzer concluded (verdicts) and the alerts it raised.

Verdicts are kept per height and per validator, so pages and history queries never recompute from
raw votes. A validator's votes at one height are a short string per vote type, one character per
round: S signed (for a block), N nil, M missed, U unknown (ctop was not listening), L late (a prevote
the node never relayed although the validator precommitted in that round: CometBFT drops a prevote
that reaches it after the height is committed, so the validator was there). "SM" = signed in round 0,
missed in round 1.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

SIGNED, NIL, MISSED, UNKNOWN, LATE = "S", "N", "M", "U", "L"

# A validator's letters keep at most this many rounds of a height: the last ones (a height past it is
# a long halt, or a node forging round numbers; the commit round and the rounds before it are what
# tell). HeightVerdict.rounds still counts them all.
MAX_VERDICT_ROUNDS = 32


class HeightVerdict(models.Model):
    """One judged height of a chain."""

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    judged_at = models.DateTimeField()
    chain = models.ForeignKey("consensus.Chain", on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    rounds = models.SmallIntegerField(help_text="Rounds the height took.")
    commit_round = models.SmallIntegerField(null=True, blank=True)
    unknown = models.BooleanField(default=False, help_text="In a gap: ctop did not see all of it.")
    from_commit = models.BooleanField(
        default=False,
        help_text="ctop saw none of it: judged from the chain's canonical commit (the commit round's precommits).",
    )
    total_power = models.BigIntegerField()
    missed_validators = models.IntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "height"], name="heightverdict_natural_key")]

    def __str__(self) -> str:
        return f"{self.chain_id} h={self.height}"


class RoundVerdict(models.Model):
    """Voting power per vote type in one round: who voted for a block, for nil, or not at all."""

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    total_power = models.BigIntegerField()
    prevote_power = models.BigIntegerField(help_text="Prevoted for a block.")
    prevote_nil_power = models.BigIntegerField()
    precommit_power = models.BigIntegerField(help_text="Precommitted for a block.")
    precommit_nil_power = models.BigIntegerField()
    chain = models.ForeignKey("consensus.Chain", on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    round = models.SmallIntegerField()
    proposer = models.ForeignKey(
        "consensus.Validator", on_delete=models.DO_NOTHING, null=True, blank=True, db_index=False, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "height", "round"], name="roundverdict_natural_key")]

    def __str__(self) -> str:
        return f"{self.chain_id} h={self.height} r={self.round}"

    @property
    def missing_prevote_power(self) -> int:
        return self.total_power - self.prevote_power - self.prevote_nil_power

    @property
    def missing_precommit_power(self) -> int:
        return self.total_power - self.precommit_power - self.precommit_nil_power


class ValidatorVerdict(models.Model):
    """One validator of the active set at one height: its prevotes and precommits, round by round."""

    id = models.BigAutoField(primary_key=True)
    height = models.BigIntegerField()
    power = models.BigIntegerField()
    chain = models.ForeignKey("consensus.Chain", on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    validator = models.ForeignKey(
        "consensus.Validator", on_delete=models.DO_NOTHING, db_index=False, related_name="verdicts"
    )
    prevotes = models.CharField(max_length=MAX_VERDICT_ROUNDS, help_text="One letter per round (the last 32).")
    precommits = models.CharField(max_length=MAX_VERDICT_ROUNDS)
    missed = models.BooleanField(help_text="Missed at least one vote at this height.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "height", "validator"], name="validatorverdict_natural_key"),
        ]
        indexes = [
            # The missed-votes rule and the validator page: a validator's latest heights.
            models.Index(fields=["validator", "-height"], name="verdict_validator_height"),
        ]

    def __str__(self) -> str:
        return f"{self.validator_id} h={self.height} {self.prevotes}/{self.precommits}"


class VoterSet(models.Model):
    """The columns of a height's history row: the validators judged at it, ascending by id. Sets
    change rarely (joins, leaves), so a few rows serve millions of heights."""

    id = models.AutoField(primary_key=True)  # 4 bytes in every history row
    chain = models.ForeignKey("consensus.Chain", on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    validators = ArrayField(models.IntegerField(), help_text="Validator ids, ascending.")
    digest = models.CharField(max_length=32, help_text="md5 of the array's text form: the natural key.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "digest"], name="voterset_natural_key")]

    def __str__(self) -> str:
        return f"{self.chain_id} set of {len(self.validators)}"


class HeightHistory(models.Model):
    """The long-term record of a judged height, one packed row (README "Storage"): for every round
    kept and every validator of `voters`, one byte, the prevote's letter code in the high nibble
    and the precommit's in the low (analysis.history); and, 2 bytes a vote, when each vote arrived
    (analysis.latency). Measured (bench_storage), 971 bytes a height for 150 validators: ~5.1 GB a
    chain-year of 6 s blocks. Kept after the per-validator verdicts are pruned."""

    pk = models.CompositePrimaryKey("chain", "height")
    height = models.BigIntegerField()
    judged_at = models.DateTimeField()
    voters = models.ForeignKey(VoterSet, on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    chain = models.ForeignKey("consensus.Chain", on_delete=models.DO_NOTHING, db_index=False, related_name="+")
    rounds = models.SmallIntegerField(help_text="Rounds the height took (the letters keep the last 32).")
    unknown = models.BooleanField(default=False)
    from_commit = models.BooleanField(default=False)
    letters = models.BinaryField(help_text="rounds kept x validators bytes, round by round.")
    # Vote latency and proposals (analysis.latency); NULL where nothing was seen (a gap height).
    delays = models.BinaryField(null=True, blank=True, help_text="rounds kept x validators x 2 int16, 10 ms units.")
    round_info = models.BinaryField(null=True, blank=True, help_text="Per kept round: proposer, quorum delays, flags.")
    vantage = models.IntegerField(
        null=True, blank=True, help_text="The endpoint (consensus.Endpoint id) the votes were timed at."
    )

    def __str__(self) -> str:
        return f"{self.chain_id} h={self.height}"


class AlertKind(models.TextChoices):
    MISSED_VOTES = "missed_votes", "missed votes"
    HALT_RISK = "halt_risk", "halt risk"
    STALLED = "stalled", "stalled chain"
    MONITORING_GAP = "monitoring_gap", "monitoring gap"
    MASS_MISSED_VOTES = "mass_missed_votes", "many validators missing votes"
    SLOW_VALIDATOR = "slow_validator", "slow validator"
    FAILED_PROPOSALS = "failed_proposals", "failed proposals"
    EMPTY_BLOCKS = "empty_blocks", "empty blocks"
    # From the chain's own status (validators.status, REST): analysis.chainstatus.
    JAIL_RISK = "jail_risk", "jail risk"
    JAILED = "jailed", "jailed"
    TOMBSTONED = "tombstoned", "tombstoned"
    LEFT_SET = "left_set", "left the active set"
    POWER_CHANGED = "power_changed", "voting power changed"


class Severity(models.IntegerChoices):
    INFO = 10, "info"
    WARNING = 20, "warning"
    CRITICAL = 30, "critical"


class Alert(models.Model):
    """A condition with a lifecycle: opened once, updated while it lasts, resolved when it ends."""

    chain = models.ForeignKey("consensus.Chain", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=32, choices=AlertKind.choices)
    validator = models.ForeignKey(
        "consensus.Validator", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    severity = models.SmallIntegerField(choices=Severity.choices, default=Severity.WARNING)
    is_open = models.BooleanField(default=True)
    opened_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    first_height = models.BigIntegerField(null=True, blank=True)
    last_height = models.BigIntegerField(null=True, blank=True)
    count = models.IntegerField(default=1, help_text="How many times the condition was seen.")
    summary = models.CharField(max_length=255)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            # One open alert per condition: a restart or a second analyzer can never open it twice.
            models.UniqueConstraint(
                fields=["chain", "kind", "validator"],
                condition=Q(is_open=True),
                nulls_distinct=False,
                name="alert_one_open",
            ),
        ]
        indexes = [models.Index(fields=["is_open", "-updated_at"], name="alert_open_recent")]
        permissions = [("resolve_alert", "Can resolve an open alert by hand")]

    def __str__(self) -> str:
        return self.summary

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("analysis:alert", args=[self.pk])

    @property
    def severity_class(self) -> str:
        """How pages mark it: "bad" for critical, "warn" for a warning."""
        return {Severity.CRITICAL: "bad", Severity.WARNING: "warn"}.get(self.severity, "")


class AlertSettings(models.Model):
    """Per-chain thresholds of the alert rules (editable in the admin; defaults apply without a row)."""

    chain = models.OneToOneField(
        "consensus.Chain", on_delete=models.CASCADE, primary_key=True, related_name="alert_settings"
    )
    consecutive_misses = models.PositiveSmallIntegerField(
        default=2, help_text="Open after missing this many heights in a row."
    )
    window = models.PositiveSmallIntegerField(default=20, help_text="...or this many of the last `window` heights:")
    window_misses = models.PositiveSmallIntegerField(default=5)
    resolve_after = models.PositiveSmallIntegerField(
        default=5, help_text="Resolve after this many signed heights in a row."
    )
    stall_after_seconds = models.PositiveIntegerField(default=60, help_text="Stalled: no new height for this long.")
    halt_after_seconds = models.PositiveIntegerField(
        default=20,
        help_text="Halt risk: the height in progress has lacked +2/3 prevoting or precommitting this long.",
    )
    grace_seconds = models.PositiveSmallIntegerField(
        default=3, help_text="Wait for late votes before judging a height."
    )
    blind_after_seconds = models.PositiveIntegerField(
        default=30, help_text="Monitoring gap: ctop has been blind (or without a fresh report) this long."
    )
    cooldown_seconds = models.PositiveIntegerField(
        default=60,
        help_text="A monitoring-gap or stalled alert resolves only after its condition stayed clear this long "
        "(a flapping condition makes one alert, not one per flap).",
    )
    max_validator_alerts = models.PositiveSmallIntegerField(
        default=10,
        help_text="More validators than this missing votes at once: one network-wide alert instead of one each.",
    )
    # Vote latency and proposals (analysis.latency, analysis.performance).
    latency_window = models.PositiveIntegerField(
        default=100, help_text="Slow validator: judged over this many latest heights."
    )
    slow_factor = models.FloatField(
        default=3.0, help_text="Slow: its p95 arrival delay is over this many times the chain's median p95..."
    )
    slow_min_ms = models.PositiveIntegerField(
        default=250, help_text="...and over this many milliseconds (a fast chain's small differences are fine)."
    )
    slow_after_quorum = models.FloatField(
        default=0.9,
        help_text="Slow also: this share of its votes came after +2/3 had voted, while the chain's median "
        "validator's share is under half (0: off).",
    )
    proposer_turns = models.PositiveSmallIntegerField(default=10, help_text="Failed proposals: of its last N turns...")
    proposer_failures = models.PositiveSmallIntegerField(
        default=0,
        help_text="...this many had no proposal arrive (0: off, the default: an offline validator proposes "
        "nothing either, and its missed-votes alert says so).",
    )
    empty_blocks = models.PositiveSmallIntegerField(
        default=3,
        help_text="Empty blocks: a validator's latest N blocks in a row carried no transactions, and the other "
        "proposers' blocks carry some so often that this is not chance (0: off).",
    )
    # Escalation of a missed-votes alert while it lasts (analysis.escalation): each step up is one
    # notification.
    critical_missed_heights = models.PositiveIntegerField(
        default=25,
        help_text="Missed votes: critical once the validator has missed this many heights since the alert "
        "opened (0: never by count).",
    )
    critical_jail_risk = models.FloatField(
        default=0.8,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Missed votes: critical once this share of the misses the chain's slashing window allows "
        "is used (0: never; where the chain's REST API is read). The jail-risk alert's critical share too.",
    )

    # The chain's own status (analysis.chainstatus).
    jail_risk_warning = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Jail risk: the chain's missed-blocks counter passes this share of the allowance (0: off); "
        "critical from critical_jail_risk.",
    )
    power_change_share = models.FloatField(
        default=0.2,
        validators=[MinValueValidator(0.0)],
        help_text="Voting power changed: by more than this share in one step (0: off).",
    )

    class Meta:
        verbose_name_plural = "alert settings"

    def __str__(self) -> str:
        return f"alert settings of {self.chain}"

    @classmethod
    def for_chain(cls, chain) -> AlertSettings:
        return cls.objects.filter(chain=chain).first() or cls(chain=chain)


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "generic webhook (JSON)"
    SLACK = "slack", "Slack incoming webhook"
    DISCORD = "discord", "Discord webhook"
    TELEGRAM = "telegram", "Telegram bot"
    PAGERDUTY = "pagerduty", "PagerDuty Events v2"
    EMAIL = "email", "email"


class ValidatorScope(models.TextChoices):
    """Which validators' alerts a channel takes (alerts about the whole chain ignore it)."""

    ALL = "all", "all validators"
    WATCHED = "watched", "watched validators only"
    CHOSEN = "chosen", "the chosen validators only"


class NotificationChannel(models.Model):
    """Where alerts go. Secrets (URLs with tokens, routing keys) live here and are never logged."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    target = models.CharField(
        max_length=500,
        help_text="Webhook URL (Slack and Discord URLs are secrets themselves), e-mail address, Telegram chat id, "
        "or a PagerDuty events URL (blank: PagerDuty's own).",
        blank=True,
    )
    secret = models.CharField(
        max_length=500,
        blank=True,
        help_text="Telegram bot token or PagerDuty routing key (write-only in the admin, never logged).",
    )
    api_url = models.URLField(
        blank=True, help_text="Telegram only: a Bot API server of your own (blank: https://api.telegram.org)."
    )
    chains = models.ManyToManyField("consensus.Chain", blank=True, help_text="Only these chains (none = all).")
    min_severity = models.SmallIntegerField(choices=Severity.choices, default=Severity.WARNING)
    validator_scope = models.CharField(
        max_length=8,
        choices=ValidatorScope.choices,
        default=ValidatorScope.ALL,
        help_text="Alerts about one validator: of any, of watched ones, or of the chosen ones. Alerts about "
        "a whole chain (halt risk, stalled, ctop blind) reach the channel whatever this says.",
    )
    validators = models.ManyToManyField(
        "consensus.Validator", blank=True, related_name="+", help_text="The chosen validators (scope: chosen)."
    )
    enabled = models.BooleanField(default=True)
    last_error = models.TextField(blank=True, help_text="The last permanent failure (fix the channel, then re-enable).")
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class NotificationEvent(models.TextChoices):
    OPENED = "opened", "opened"
    ESCALATED = "escalated", "escalated"
    RESOLVED = "resolved", "resolved"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "pending"
    SENT = "sent", "sent"
    FAILED = "failed", "failed"


class Notification(models.Model):
    """One message about one alert event (opened, escalated or resolved) to one channel: sent once.

    A channel never gets the same state of an alert twice: one "opened" and one "resolved" at most,
    and each severity announced (by opening or by escalating) once. Both are database constraints,
    so a restart or a second analyzer queueing the same event changes nothing."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=16, choices=NotificationEvent.choices)
    severity = models.SmallIntegerField(
        choices=Severity.choices, default=Severity.WARNING, help_text="The alert's severity when queued."
    )
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.SmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["alert", "channel", "event"],
                condition=~Q(event="escalated"),
                name="notification_once",
            ),
            models.UniqueConstraint(
                fields=["alert", "channel", "severity"],
                condition=~Q(event="resolved"),
                name="notification_state_once",
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.event} {self.alert_id} -> {self.channel_id} ({self.status})"


class WatchedValidator(models.Model):
    """A validator the team runs or cares for ("ours"): the overview's panel, channels scoped to them.
    Kept here, not on consensus.Validator: that table is the record of what the chains said."""

    validator = models.OneToOneField("consensus.Validator", on_delete=models.CASCADE, related_name="watch")
    note = models.CharField(max_length=200, blank=True, help_text="Why it is watched, whose node it is.")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"watched: {self.validator}"

    def get_absolute_url(self) -> str:
        return self.validator.get_absolute_url()  # settings.ABSOLUTE_URL_OVERRIDES: its page
