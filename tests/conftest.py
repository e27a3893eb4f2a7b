"""Shared fixtures. Tests use the real PostgreSQL (pytest-django's test database) and a Redis
database of their own (TEST_REDIS_URL, flushed around each test that asks for it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
# Real captures from a CometBFT v1.0.1 localnet (data, kept as received; see their README).
FIXTURES = ROOT / "tests" / "fixtures" / "cometbft-v1.0.1-localnet"


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def chain(db):
    from consensus.models import Chain, Endpoint

    c = Chain.objects.create(name="testnet", chain_id="test-1")
    Endpoint.objects.create(chain=c, url="http://127.0.0.1:1", priority=0)
    return c


@pytest.fixture
def net(chain):
    """The test chain with validators A, B, C and D (power 10 each) in its set from height 1."""
    from validators.services import Member, apply_set

    from .analysishelpers import A, B, C, D

    apply_set(chain.pk, 1, [Member(a, 10, i) for i, a in enumerate((A, B, C, D))])
    return chain


@pytest.fixture
def user_client(client, django_user_model):
    """A signed-in team member without staff rights."""
    user = django_user_model.objects.create_user("member", email="", password="pw-for-tests")
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", email="", password="pw-for-tests")
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def localnet(tmp_path_factory):
    """A real 4-validator CometBFT localnet (injective-core), shared by the end-to-end tests.

    Tests that stop a validator start it again before they finish."""
    from tools.localnet import Localnet, LocalnetUnavailable

    try:
        net = Localnet(tmp_path_factory.mktemp("localnet"))
    except LocalnetUnavailable as exc:
        pytest.skip(f"real CometBFT localnet unavailable here: {exc}")
    net.start()
    try:
        net.wait_for_height(3, timeout=90)
        yield net
    finally:
        net.stop()


def pytest_collection_modifyitems(config, items):
    """End-to-end tests drive a real 4-validator network on a 2-core machine whose timing varies
    (a validator's vote can come late): such a test gets one rerun, and the rerun is reported."""
    for item in items:
        if item.get_closest_marker("localnet"):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
