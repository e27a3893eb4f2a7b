"""The validator-set history: joins, leaves and power changes, and the set at any height."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction
from django.db.backends.postgresql.psycopg_any import NumericRange

from consensus.models import Validator
from validators.models import SetMembership
from validators.selectors import active_set, set_changes
from validators.services import Member, apply_set

A, B, C, D = ("A" * 40, "B" * 40, "C" * 40, "D" * 40)


def members(*entries: tuple[str, int]) -> list[Member]:
    return [Member(address=a, voting_power=p, position=i) for i, (a, p) in enumerate(entries)]


def set_at(chain, height: int) -> list[tuple[str, int, int]]:
    return [(m.validator.address, m.voting_power, m.position) for m in active_set(chain.pk, height)]


@pytest.mark.django_db
def test_active_set_across_joins_leaves_and_power_changes(chain):
    assert str(apply_set(chain.pk, 100, members((A, 10), (B, 10), (C, 5)))) == "+3 -0 ~0"
    # Same set again: nothing written.
    before = SetMembership.objects.count()
    assert apply_set(chain.pk, 110, members((A, 10), (B, 10), (C, 5))).empty
    assert SetMembership.objects.count() == before
    # D joins at 120 (C moves to position 3), B's power rises at 130, A leaves at 140.
    assert str(apply_set(chain.pk, 120, members((A, 10), (B, 10), (D, 7), (C, 5)))) == "+1 -0 ~1"
    assert str(apply_set(chain.pk, 130, members((B, 20), (A, 10), (D, 7), (C, 5)))) == "+0 -0 ~2"
    assert str(apply_set(chain.pk, 140, members((B, 20), (D, 7), (C, 5)))) == "+0 -1 ~2"

    assert set_at(chain, 99) == []
    assert set_at(chain, 100) == [(A, 10, 0), (B, 10, 1), (C, 5, 2)]
    assert set_at(chain, 119) == [(A, 10, 0), (B, 10, 1), (C, 5, 2)]
    assert set_at(chain, 120) == [(A, 10, 0), (B, 10, 1), (D, 7, 2), (C, 5, 3)]
    assert set_at(chain, 130) == [(B, 20, 0), (A, 10, 1), (D, 7, 2), (C, 5, 3)]
    assert set_at(chain, 10**9) == [(B, 20, 0), (D, 7, 1), (C, 5, 2)]

    changes = set_changes(chain.pk, 119, 140)
    summary = [(c.height, c.address[0], c.kind, c.old_power, c.new_power) for c in changes]
    assert (120, "D", "joined", None, 7) in summary
    assert (130, "B", "changed", 10, 20) in summary
    assert (140, "A", "left", 10, None) in summary
    assert all(119 < c.height <= 140 for c in changes)
    # The window is exclusive below: nothing of height 100 shows in (100, 119].
    assert set_changes(chain.pk, 100, 119) == []
    assert Validator.objects.filter(chain=chain).count() == 4


@pytest.mark.django_db
def test_set_must_move_forward(chain):
    apply_set(chain.pk, 100, members((A, 10)))
    with pytest.raises(ValueError, match="not newer"):
        apply_set(chain.pk, 100, members((A, 11)))


@pytest.mark.django_db
def test_overlapping_memberships_are_refused_by_the_database(chain):
    v = Validator.objects.create(chain=chain, address=A)
    SetMembership.objects.create(chain=chain, validator=v, heights=NumericRange(1, 10), voting_power=1, position=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        SetMembership.objects.create(
            chain=chain, validator=v, heights=NumericRange(5, None), voting_power=2, position=0
        )
    # Adjacent ranges are fine: [1,10) then [10, ...).
    SetMembership.objects.create(chain=chain, validator=v, heights=NumericRange(10, None), voting_power=2, position=0)
