"""Shared fixtures. Tests use the real PostgreSQL (pytest-django's test database) and a Redis
database of their own (TEST_REDIS_URL, flushed around each test that asks for it)."""

from __future__ import annotations

import os
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
def receiver():
    """An HTTP server on 127.0.0.1 that records what notification channels send it."""
    from .receivers import Receiver

    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def sim():
    """A simulator on its own event loop; the test adds chains, then starts it; stopped after."""
    from consensus.simulator import SimulatorThread

    s = SimulatorThread()
    yield s
    s.stop()


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

    if os.environ.get("CTOP_SKIP_LOCALNET"):
        pytest.skip("real CometBFT localnet unavailable here: CTOP_SKIP_LOCALNET is set")
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


@pytest.fixture(autouse=True)
def _localnet_left_as_found(request):
    """A test on the shared localnet leaves it as it found it: every node up, the chain moving."""
    yield
    if "localnet" in request.fixturenames:
        request.getfixturevalue("localnet").restore()


# Areas that need something from the machine (a binary, a package). Skipping one proves nothing about
# it: outside CI bin/test ends with a line saying so; under CI=true the run fails.
AREAS = {
    "real CometBFT localnet unavailable": "the localnet end-to-end tests (injective-core, x86_64 Linux)",
    "chromium": "the browser test (Debian's chromium and chromium-driver)",
    "redis-server binary not found": "the Redis outage tests (a redis-server binary)",
    "promtool not found": "the Prometheus rules and dashboard checks (Debian's prometheus package)",
    "apt install prometheus": "the real Prometheus scrape (Debian's prometheus package)",
}


_SKIPPED: dict[str, str] = {}  # area -> the reason it was skipped


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
        for marker, area in AREAS.items():
            if marker in reason:
                _SKIPPED.setdefault(area, reason.removeprefix("Skipped: "))


def pytest_unconfigure(config):
    """The very last lines of the run (after pytest's own summary), where nobody misses them."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    for area, reason in _SKIPPED.items():
        prefix = "CI FAILS" if os.environ.get("CI") == "true" else "NOT TESTED HERE"
        reporter.write_line(f"{prefix}: {area} skipped: {reason}", red=True, bold=True)


def pytest_sessionfinish(session, exitstatus):
    if _SKIPPED and os.environ.get("CI") == "true" and exitstatus == 0:
        session.exitstatus = 1


def pytest_collection_modifyitems(config, items):
    """End-to-end tests drive a real 4-validator network on a 2-core machine whose timing varies
    (a vote can come late): transport tests get one rerun, reported. Tests of what the analysis
    concludes (marked analysis_truth) get none: a false blame is a product bug, not flakiness."""
    for item in items:
        if item.get_closest_marker("localnet"):
            item.add_marker(pytest.mark.slow)
        if item.get_closest_marker("localnet") and not item.get_closest_marker("analysis_truth"):
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=2))
        if item.get_closest_marker("localnet") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(600))


@pytest.fixture
def node():
    """A hostile node on loopback (tests.hostile): it says whatever the test makes it say."""
    from .hostile import HostileNode

    n = HostileNode().start()
    yield n
    n.stop()
