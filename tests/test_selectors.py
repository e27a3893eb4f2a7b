"""The reads more than one stage shares, on the real database: one home for each question."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from consensus.models import Chain, Round, RoundStep, Step, Validator
from consensus.selectors import latest_heights, latest_stored_height

T0 = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.django_db
def test_latest_heights_reads_the_newest_round_and_when_the_height_began_whatever_the_rounds():
    busy, idle = Chain.objects.create(name="busy"), Chain.objects.create(name="idle")
    proposer = Validator.objects.create(chain=busy, address="AB" * 20)
    Round.objects.create(chain=busy, height=9, round=0, started_at=T0 - timedelta(seconds=60))
    # A height of many rounds (a hostile node may report thousands): still one row per chain.
    for r in range(200):
        Round.objects.create(
            chain=busy,
            height=10,
            round=r,
            started_at=T0 + timedelta(seconds=r),
            proposer=proposer if r == 199 else None,
        )
    RoundStep.objects.create(chain=busy, height=10, round=199, step=Step.PREVOTE, seen_at=T0)
    RoundStep.objects.create(chain=busy, height=10, round=199, step=Step.PRECOMMIT, seen_at=T0)
    RoundStep.objects.create(chain=busy, height=10, round=3, step=Step.COMMIT, seen_at=T0)
    latest = latest_heights([busy.pk, idle.pk])
    assert idle.pk not in latest  # nothing stored: absent, not an error
    top = latest[busy.pk]
    assert (top.height, top.round, top.proposer_id, top.step) == (10, 199, proposer.pk, Step.PRECOMMIT)
    assert (top.started_at, top.round_started_at) == (T0, T0 + timedelta(seconds=199))
    assert latest_stored_height(busy)[0] == 10 and latest_stored_height(idle) is None


@pytest.mark.django_db
def test_moving_validator_to_consensus_keeps_the_staffs_permissions_and_the_admin_history():
    """The migration that moved Validator from the validators app carries its content type along
    (and with it every permission granted on validators and the admin's log entries)."""
    migration = importlib.import_module("consensus.migrations.0005_validator")
    editor = SimpleNamespace(connection=connection)
    ContentType.objects.filter(app_label="consensus", model="validator").delete()
    old = ContentType.objects.create(app_label="validators", model="validator")
    granted = Permission.objects.create(content_type=old, codename="change_validator_x", name="x")
    migration.move_content_type(apps, editor)
    moved = ContentType.objects.get(pk=old.pk)
    assert (moved.app_label, moved.model) == ("consensus", "validator")
    assert Permission.objects.get(pk=granted.pk).content_type_id == old.pk
    migration.move_content_type(apps, editor)  # again: nothing to do, nothing doubled
    assert ContentType.objects.filter(model="validator").count() == 1
    migration.move_content_type_back(apps, editor)
    assert ContentType.objects.get(pk=old.pk).app_label == "validators"
