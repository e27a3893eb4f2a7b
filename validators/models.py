"""The history of every active set (who a validator is lives in consensus.Validator).

The history is a table of memberships: validator V was in the set of chain C with power P at
position I for heights [from, to). An open upper bound means "still in the set". A PostgreSQL
exclusion constraint forbids overlapping memberships of one validator, so the database itself
guarantees there is exactly one answer to "V's power at height H".
"""

from __future__ import annotations

from django.contrib.postgres.constraints import ExclusionConstraint
from django.contrib.postgres.fields import BigIntegerRangeField, RangeOperators
from django.contrib.postgres.indexes import GistIndex
from django.db import models


class SetMembership(models.Model):
    """Validator V in the active set of its chain for heights [lower, upper), power and position fixed.

    A power or position change closes one row at height H and opens the next at H; a leave closes
    it; a join opens one. So the set at height H is one GiST-indexed query, and the changes between
    H1 and H2 are the rows whose bounds fall in (H1, H2].
    """

    chain = models.ForeignKey("consensus.Chain", on_delete=models.CASCADE, related_name="+")
    # No separate index: the exclusion constraint's GiST index (validator, heights) serves it.
    validator = models.ForeignKey(
        "consensus.Validator", on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    heights = BigIntegerRangeField(help_text="[first height, first height after) ; open upper = current.")
    voting_power = models.BigIntegerField()
    position = models.IntegerField(help_text="Index in /validators order (the votes' validator_index).")

    class Meta:
        constraints = [
            ExclusionConstraint(
                name="membership_no_overlap",
                expressions=[("validator", RangeOperators.EQUAL), ("heights", RangeOperators.OVERLAPS)],
                index_type="gist",
            ),
        ]
        indexes = [
            # "The active set at height H" and "what changed between H1 and H2" (selectors.py).
            GistIndex(fields=["chain", "heights"], name="membership_chain_heights"),
        ]

    def __str__(self) -> str:
        return f"{self.validator} {self.heights} power={self.voting_power}"


class SetIndexState(models.Model):
    """How far the set history of a chain is known to be exact, and the indexer's last trouble."""

    chain = models.OneToOneField(
        "consensus.Chain", on_delete=models.CASCADE, primary_key=True, related_name="set_index"
    )
    verified_height = models.BigIntegerField(help_text="History is exact for every height up to this one.")
    verified_at = models.DateTimeField()
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.chain} verified to {self.verified_height}"


# --- status from the chain's Cosmos SDK REST API (validators.status) ---


class BondStatus(models.TextChoices):
    BONDED = "bonded", "bonded"
    UNBONDING = "unbonding", "unbonding"
    UNBONDED = "unbonded", "unbonded"
    UNKNOWN = "unknown", "unknown"


class ChainRestStatus(models.Model):
    """A chain's last read of its REST API: the slashing rule, and why status is missing if it is.
    A chain without `rest_url` has none of this and keeps working (pages say so)."""

    chain = models.OneToOneField(
        "consensus.Chain", on_delete=models.CASCADE, primary_key=True, related_name="rest_status"
    )
    signed_blocks_window = models.BigIntegerField(null=True, blank=True)
    min_signed_per_window = models.DecimalField(max_digits=20, decimal_places=18, null=True, blank=True)
    downtime_jail_seconds = models.FloatField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True, help_text="The last complete read.")
    last_error = models.TextField(blank=True, help_text="The last read's trouble (a part may have failed).")
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "chain REST statuses"

    def __str__(self) -> str:
        return f"REST status of {self.chain}"

    @property
    def allowed_misses(self) -> int | None:
        """Misses the downtime rule allows per window (the SDK's window - round(window x min_signed))."""
        if self.signed_blocks_window is None or self.min_signed_per_window is None:
            return None
        min_signed = int((self.min_signed_per_window * self.signed_blocks_window).to_integral_value())
        return max(0, self.signed_blocks_window - min_signed)


class ValidatorStatus(models.Model):
    """A validator's latest status as its chain reports it (staking and slashing modules)."""

    validator = models.OneToOneField(
        "consensus.Validator", on_delete=models.CASCADE, primary_key=True, related_name="status"
    )
    chain = models.ForeignKey("consensus.Chain", on_delete=models.CASCADE, related_name="+")
    bond_status = models.CharField(max_length=16, choices=BondStatus.choices, default=BondStatus.UNKNOWN)
    jailed = models.BooleanField(default=False)
    tombstoned = models.BooleanField(default=False)
    tokens = models.DecimalField(max_digits=41, decimal_places=0, default=0)
    commission = models.DecimalField(max_digits=20, decimal_places=18, null=True, blank=True)
    missed_blocks_counter = models.BigIntegerField(null=True, blank=True, help_text="None: no signing info read.")
    jailed_until = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(help_text="The last staking read (bond status, jailed, tokens).")
    counters_read_at = models.DateTimeField(
        null=True, blank=True, help_text="The last slashing read (counter, jailed until): older when it fails."
    )
    # When ctop saw it become jailed / tombstoned (None: it was so at ctop's first read, or is not):
    # alerts follow the events ctop witnessed, not a state some validator has been in for years.
    jailed_since = models.DateTimeField(null=True, blank=True)
    tombstoned_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "validator statuses"
        indexes = [models.Index(fields=["chain"], name="validatorstatus_chain")]

    def __str__(self) -> str:
        return f"{self.validator_id}: {self.bond_status}{' jailed' if self.jailed else ''}"


class StatusChange(models.Model):
    """The history of a validator's status: one row each time (bond status, jailed, tombstoned)
    changes, like the set memberships keep every change of the active set."""

    chain = models.ForeignKey("consensus.Chain", on_delete=models.CASCADE, related_name="+")
    validator = models.ForeignKey(
        "consensus.Validator", on_delete=models.CASCADE, related_name="status_changes", db_index=False
    )
    seen_at = models.DateTimeField()
    bond_status = models.CharField(max_length=16, choices=BondStatus.choices)
    jailed = models.BooleanField()
    tombstoned = models.BooleanField()
    tokens = models.DecimalField(max_digits=41, decimal_places=0)

    class Meta:
        indexes = [models.Index(fields=["validator", "-seen_at"], name="statuschange_validator")]

    def __str__(self) -> str:
        return f"{self.validator_id} {self.seen_at:%Y-%m-%d %H:%M} {self.bond_status}{' jailed' if self.jailed else ''}"
