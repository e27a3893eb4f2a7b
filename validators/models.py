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
