"""Writes to the validator-set history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.db.backends.postgresql.psycopg_any import NumericRange

from consensus.identity import validator_ids
from consensus.models import Validator

from .models import SetMembership


@dataclass(frozen=True)
class Member:
    """One entry of an observed active set."""

    address: str
    voting_power: int
    position: int
    pub_key_type: str = ""
    pub_key: str = ""


@dataclass(frozen=True)
class SetDiff:
    joined: int = 0
    left: int = 0
    changed: int = 0

    @property
    def empty(self) -> bool:
        return not (self.joined or self.left or self.changed)

    def __str__(self) -> str:
        return f"+{self.joined} -{self.left} ~{self.changed}"


@transaction.atomic
def apply_set(chain_id: int, height: int, members: list[Member]) -> SetDiff:
    """Record that `members` is the active set from `height` on (the set currently open is the
    one it replaces). Unchanged validators write nothing; an identical set writes nothing at all.
    """
    ids = validator_ids(chain_id, [m.address for m in members])
    for m in members:
        if m.pub_key:
            Validator.objects.filter(id=ids[m.address], pub_key="").update(
                pub_key=m.pub_key, pub_key_type=m.pub_key_type
            )
    open_rows = {
        row.validator_id: row
        for row in SetMembership.objects.select_for_update().filter(chain_id=chain_id, heights__upper_inf=True)
    }
    new_by_id = {ids[m.address]: m for m in members}
    joined = left = changed = 0
    to_close: list[SetMembership] = []
    to_open: list[SetMembership] = []
    for vid, row in open_rows.items():
        m = new_by_id.get(vid)
        if m is None:
            left += 1
            to_close.append(row)
        elif (m.voting_power, m.position) != (row.voting_power, row.position):
            changed += 1
            to_close.append(row)
    closed_ids = {row.validator_id for row in to_close}
    for vid, m in new_by_id.items():
        row = open_rows.get(vid)
        if row is None:
            joined += 1
        elif vid not in closed_ids:
            continue
        to_open.append(
            SetMembership(
                chain_id=chain_id,
                validator_id=vid,
                heights=NumericRange(height, None, "[)"),
                voting_power=m.voting_power,
                position=m.position,
            )
        )
    for row in to_close:
        if row.heights.lower >= height:
            raise ValueError(f"set at height {height} is not newer than the recorded one (from {row.heights.lower})")
        row.heights = NumericRange(row.heights.lower, height, "[)")
        row.save(update_fields=["heights"])
    SetMembership.objects.bulk_create(to_open)
    return SetDiff(joined=joined, left=left, changed=changed)
