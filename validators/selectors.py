"""Reads of the validator-set history. Each is one indexed query (GiST on (chain, heights))."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection
from django.db.backends.postgresql.psycopg_any import NumericRange
from django.db.models import Q, QuerySet

from .models import SetMembership


def active_set(chain_id: int, height: int) -> QuerySet[SetMembership]:
    """The memberships in force at `height`, in position (validator_index) order."""
    return (
        SetMembership.objects.filter(chain_id=chain_id, heights__contains=height)
        .select_related("validator")
        .order_by("position")
    )


def memberships_between(chain_id: int, lo: int, hi: int) -> list[tuple[int, int | None, int, int, int]]:
    """Every membership in force at some height of lo..hi, in position order, as (first height,
    first height after it or None, validator id, voting power, position): one GiST range scan,
    for judging a run of heights at once."""
    rows = (
        SetMembership.objects.filter(chain_id=chain_id, heights__overlap=NumericRange(lo, hi, "[]"))
        .order_by("position")
        .values_list("heights", "validator_id", "voting_power", "position")
    )
    return [(r.lower, r.upper, vid, power, position) for r, vid, power, position in rows]


def first_recorded_height(chain_id: int) -> int | None:
    """The first height whose active set is recorded (before it, nobody knows who was in the set)."""
    first = (
        SetMembership.objects.filter(chain_id=chain_id).order_by("heights").values_list("heights", flat=True).first()
    )
    return first.lower if first is not None else None


def latest_known_set(chain_id: int, height: int) -> tuple[list[SetMembership], int | None]:
    """The set at `height` for a height in progress, which the indexer may not have reached yet:
    then the previous height's set (a set changes rarely; the caller can say which it shows).
    Returns the memberships and the height whose set they are (None if neither is recorded)."""
    for h in (height, height - 1):
        members = list(active_set(chain_id, h))
        if members:
            return members, h
    return [], None


def latest_known_powers(heights: dict[int, int]) -> dict[int, dict[int, int]]:
    """latest_known_set's validators for many chains at once, {chain id: {validator id: voting
    power}}, given {chain id: height}: without building a model per member, and in one GiST query
    for every chain (a second one for chains whose latest set is not indexed yet), for readers of
    every chain's whole set at once such as /metrics."""
    found: dict[int, dict[int, int]] = {}
    for back in (0, 1):
        wanted = {c: h - back for c, h in heights.items() if c not in found}
        if not wanted:
            break
        with connection.cursor() as cur:
            cur.execute(
                "SELECT m.chain_id, m.validator_id, m.voting_power FROM unnest(%s::smallint[], %s::bigint[]) c(id, h)"
                " JOIN validators_setmembership m ON m.chain_id = c.id AND m.heights @> c.h",
                [list(wanted), list(wanted.values())],
            )
            for chain_id, vid, power in cur.fetchall():
                found.setdefault(chain_id, {})[vid] = power
    return found


@dataclass(frozen=True)
class SetChange:
    """One validator's change at one height: joined, left, or changed power/position."""

    height: int
    validator_id: int
    address: str
    kind: str  # "joined" | "left" | "changed"
    old_power: int | None
    new_power: int | None
    old_position: int | None
    new_position: int | None


def set_changes(chain_id: int, from_height: int, to_height: int) -> list[SetChange]:
    """Every change that took effect at a height in (from_height, to_height], oldest first.

    One query: the memberships whose range overlaps [from_height, to_height + 1] and starts or
    ends inside the window; pairing a row that ends at H with the same validator's row that starts
    at H turns "closed + opened" into one "changed".
    """
    window = NumericRange(from_height, to_height + 1, "[)")
    inside = Q(heights__startswith__gt=from_height, heights__startswith__lte=to_height) | Q(
        heights__endswith__gt=from_height, heights__endswith__lte=to_height
    )
    rows = (
        SetMembership.objects.filter(chain_id=chain_id, heights__overlap=window)
        .filter(inside)
        .select_related("validator")
        .order_by("validator_id", "heights")
    )
    ended: dict[tuple[int, int], SetMembership] = {}
    started: dict[tuple[int, int], SetMembership] = {}
    for row in rows:
        lower, upper = row.heights.lower, row.heights.upper
        if from_height < lower <= to_height:
            started[(row.validator_id, lower)] = row
        if upper is not None and from_height < upper <= to_height:
            ended[(row.validator_id, upper)] = row
    changes: list[SetChange] = []
    for key in sorted(set(started) | set(ended), key=lambda k: (k[1], k[0])):
        new, old = started.get(key), ended.get(key)
        ref = new or old
        assert ref is not None
        kind = "changed" if new and old else ("joined" if new else "left")
        changes.append(
            SetChange(
                height=key[1],
                validator_id=key[0],
                address=ref.validator.address,
                kind=kind,
                old_power=old.voting_power if old else None,
                new_power=new.voting_power if new else None,
                old_position=old.position if old else None,
                new_position=new.position if new else None,
            )
        )
    return changes
