"""The team's pages: content and permissions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from consensus.models import ChainStatus, Round
from validators.services import Member, apply_set


@pytest.mark.django_db
def test_overview_requires_login(client):
    response = client.get(reverse("analysis:overview"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.django_db
def test_overview_shows_each_chain_with_its_latest_round(staff_client, chain):
    apply_set(chain.pk, 1, [Member(address="AB" * 20, voting_power=10, position=0)])
    v = chain.validators.get()
    Round.objects.create(chain=chain, height=41, round=0, started_at=datetime(2026, 1, 1, tzinfo=UTC))
    Round.objects.create(chain=chain, height=42, round=1, started_at=datetime(2026, 1, 1, tzinfo=UTC), proposer=v)
    ChainStatus.objects.create(
        chain=chain, state="connected", endpoint="http://n1:26657", updated_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    page = staff_client.get(reverse("analysis:overview")).content.decode()
    assert "testnet" in page and ">42<" in page and "connected" in page and "http://n1:26657" in page
    assert "ABABABABABAB" in page  # the proposer, shortened
