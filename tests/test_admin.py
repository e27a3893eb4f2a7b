"""Every model is in the admin, renders for staff, and is refused to anonymous users."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from analysis.models import (
    Alert,
    AlertKind,
    AlertSettings,
    Notification,
    NotificationChannel,
    WatchedValidator,
)
from consensus.models import ChainStatus, CommitSignature, DeadLetter, Gap, Round, RoundStep, Step, Vote, VoteType
from validators.models import SetIndexState
from validators.services import Member, apply_set

from .analysishelpers import signed_verdicts

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture
def populated(chain):
    apply_set(chain.pk, 1, [Member(address="AB" * 20, voting_power=10, position=0)])
    v = chain.validators.get()
    Vote.objects.create(
        chain=chain,
        height=1,
        round=0,
        type=VoteType.PREVOTE,
        validator=v,
        block_hash=b"\x01" * 32,
        timestamp=NOW,
        received_at=NOW,
    )
    Round.objects.create(chain=chain, height=1, round=0, started_at=NOW, proposer=v, proposer_index=0)
    RoundStep.objects.create(chain=chain, height=1, round=0, step=Step.PREVOTE, seen_at=NOW)
    CommitSignature.objects.create(chain=chain, height=1, round=0, validator_index=0, flag=2, validator=v)
    Gap.objects.create(chain=chain, from_height=5, to_height=6, reason="reconnect", detected_at=NOW)
    DeadLetter.objects.create(chain=chain, stream="s", entry_id="1-0", payload="{bad", reason="bad json")
    ChainStatus.objects.create(chain=chain, state="connected", endpoint="http://n", updated_at=NOW)
    SetIndexState.objects.create(chain=chain, verified_height=1, verified_at=NOW)
    signed_verdicts(chain, 1, v, NOW)
    alert = Alert.objects.create(chain=chain, kind=AlertKind.STALLED, opened_at=NOW, updated_at=NOW, summary="stalled")
    ch = NotificationChannel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:9/x")
    Notification.objects.create(alert=alert, channel=ch, event="opened", next_attempt_at=NOW)
    AlertSettings.objects.create(chain=chain)
    WatchedValidator.objects.create(validator=v, note="ours")
    return chain


def model_admin_urls():
    for model in admin.site._registry:
        if model._meta.app_label in ("consensus", "validators", "analysis"):
            yield model


@pytest.mark.django_db
@pytest.mark.parametrize("model", list(model_admin_urls()), ids=lambda m: m._meta.label)
def test_changelist_and_detail_render_for_staff(staff_client, populated, model):
    info = (model._meta.app_label, model._meta.model_name)
    response = staff_client.get(reverse("admin:{}_{}_changelist".format(*info)))
    assert response.status_code == 200
    obj = model.objects.first()
    assert obj is not None, "the fixture should create one row of every model"
    detail = staff_client.get(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
    assert detail.status_code == 200


@pytest.mark.django_db
def test_anonymous_users_are_sent_to_login(client, populated):
    response = client.get(reverse("admin:consensus_round_changelist"))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


@pytest.mark.django_db
def test_event_tables_are_read_only(staff_client, populated):
    assert staff_client.get(reverse("admin:consensus_round_add")).status_code == 403
    row = Round.objects.get()
    response = staff_client.post(reverse("admin:consensus_round_delete", args=[row.pk]), {"post": "yes"})
    assert response.status_code == 403
    assert Round.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_round_list_filters_and_search(staff_client, populated):
    url = reverse("admin:consensus_round_changelist")
    assert staff_client.get(url, {"q": "AB" * 20}).context["cl"].result_count == 1
    assert staff_client.get(url, {"q": "CD" * 20}).context["cl"].result_count == 0
    assert staff_client.get(url, {"round_kind": "0"}).context["cl"].result_count == 1
    assert staff_client.get(url, {"round_kind": "later"}).context["cl"].result_count == 0


@pytest.mark.django_db
def test_votes_are_not_in_the_admin_but_on_the_height_page(staff_client, populated):
    """Django 5.2's admin takes no composite primary key; the height page shows each vote."""
    assert Vote not in admin.site._registry
    page = staff_client.get(reverse("analysis:height", args=[populated.name, 1]))
    assert page.status_code == 200 and "AB" * 5 in page.content.decode()


@pytest.mark.django_db
def test_changelist_does_not_count_the_whole_table(staff_client, populated, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from common.admin import EstimatedCountPaginator

    # Behave as on a big table: the planner's estimate is used, never an exact COUNT(*).
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 0)
    with CaptureQueriesContext(connection) as queries:
        staff_client.get(reverse("admin:consensus_roundstep_changelist"))
    unfiltered_counts = [
        q["sql"]
        for q in queries.captured_queries
        if "COUNT(*)" in q["sql"].upper() and "consensus_roundstep" in q["sql"] and "WHERE" not in q["sql"].upper()
    ]
    assert unfiltered_counts == []
    assert any(q["sql"].startswith("EXPLAIN") for q in queries.captured_queries)
