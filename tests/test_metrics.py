"""/metrics: Prometheus's exposition, parsed with prometheus_client's own parser, against what the
database holds for a scripted chain; and who may scrape it."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from analysis.models import Alert, AlertKind, HeightVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus.models import Validator

from .analysishelpers import A, B, C, D, all_sign, play

TOKEN = "scrape-token-for-tests"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(**headers) -> tuple[int, str]:
    response = Client(**headers).get("/metrics")
    return response.status_code, response.content.decode()


@pytest.fixture
def scene(net, settings):
    """Heights 10..29 stored and judged: D misses 10..19 alone, C misses one precommit at 25; height
    30 in progress, in round 1, where only A and B have prevoted."""
    settings.CTOP = {**settings.CTOP, "METRICS_TOKEN": TOKEN, "METRICS_WINDOW": 100}
    # A moniker comes from the chain's REST API: it must stay one label value, whatever it holds.
    Validator.objects.filter(chain=net, address=A).update(moniker='alpha"} 1\nctop_forged{chain="x"} 9\\')
    for h in range(10, 30):
        votes = all_sign()
        if h < 20:
            del votes[0][D]
        if h == 25:
            votes[0][C] = ("S", "")  # C's precommit missing: a precommit miss only
        play(net, h, votes)
    play(net, 30, {0: {}, 1: {A: ("S", ""), B: ("S", "")}})
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()
    return net


@pytest.mark.django_db
def test_the_exposition_parses_and_says_what_the_database_holds(scene):
    status, text = scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert status == 200
    got = samples(text)
    chain = (("chain", "testnet"),)
    assert got[("ctop_chain_height", chain)] == 30
    assert got[("ctop_chain_round", chain)] == 1
    assert got[("ctop_chain_missing_prevote_power_ratio", chain)] == 0.5  # C and D of four equal powers
    judged = list(HeightVerdict.objects.filter(chain=scene).values_list("height", flat=True))
    assert judged and max(judged) == 29

    def v(name: str, address: str) -> float:
        return got[(name, (("chain", "testnet"), ("validator", address)))]

    # D missed heights 10..19 (every one judged; alone each time: solo), C one precommit at 25.
    d_missed = HeightVerdict.objects.filter(chain=scene, height__in=range(10, 20)).count()
    assert v("ctop_validator_missed_prevote_heights", D) == d_missed > 0
    assert v("ctop_validator_missed_precommit_heights", D) == d_missed
    assert v("ctop_validator_solo_missed_heights", D) == d_missed
    assert (v("ctop_validator_missed_prevote_heights", C), v("ctop_validator_missed_precommit_heights", C)) == (0, 1)
    assert v("ctop_validator_missed_precommit_heights", A) == 0
    assert got[("ctop_chain_latest_judged_height", chain)] == 29
    judged_seen = HeightVerdict.objects.filter(chain=scene, unknown=False).count()
    assert got[("ctop_chain_window_heights", chain)] == judged_seen < 100  # a young chain: fewer than N
    assert v("ctop_validator_voting_power", B) == 10
    assert v("ctop_validator_in_active_set", D) == 1
    hostile = 'alpha"} 1\nctop_forged{chain="x"} 9\\'
    assert got[("ctop_validator_info", (("chain", "testnet"), ("moniker", hostile), ("validator", A)))] == 1
    assert not any(name.startswith("ctop_forged") for name, _ in got)
    # Every open alert, by kind and severity, exactly as the table says.
    for alert in Alert.objects.filter(is_open=True):
        labels = (("chain", "testnet"), ("kind", alert.kind), ("severity", alert.get_severity_display()))
        assert got[("ctop_alerts_open", labels)] >= 1
    assert Alert.objects.filter(is_open=True, kind=AlertKind.MISSED_VOTES, validator__address=D).exists()


@pytest.mark.django_db
def test_metrics_are_not_public_a_token_or_an_allowed_network_opens_them(net, settings):
    settings.CTOP = {**settings.CTOP, "METRICS_TOKEN": "", "METRICS_ALLOW": []}
    assert scrape()[0] == 403  # nothing configured: nobody
    settings.CTOP = {**settings.CTOP, "METRICS_TOKEN": TOKEN}
    assert scrape()[0] == 401
    assert scrape(HTTP_AUTHORIZATION="Bearer wrong")[0] == 401
    assert scrape(HTTP_AUTHORIZATION=f"Basic {TOKEN}")[0] == 401
    assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[0] == 200
    settings.CTOP = {**settings.CTOP, "METRICS_TOKEN": "", "METRICS_ALLOW": ["10.0.0.0/8", "not-a-network"]}
    assert scrape(REMOTE_ADDR="10.1.2.3")[0] == 200
    assert scrape(REMOTE_ADDR="::ffff:10.1.2.3")[0] == 200
    # Through a proxy (or a client pretending to be one), REMOTE_ADDR is what a header says: no entry.
    assert scrape(REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="10.1.2.3")[0] == 403
    assert scrape(REMOTE_ADDR="10.1.2.3", HTTP_FORWARDED="for=10.1.2.3")[0] == 403
    assert scrape(REMOTE_ADDR="127.0.0.1")[0] == 403
    response = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").post("/metrics")
    assert response.status_code == 405  # GET only


@pytest.mark.django_db
def test_a_scrape_pauses_the_cyclic_collector_and_gives_it_back(scene):
    """The scrape turns Python's cyclic GC off while it builds ~18,000 samples (half its time at
    20 chains x 150 validators) and must restore it, on success and on failure, and must not turn
    on a collector someone else turned off."""
    import gc
    import importlib
    from unittest import mock

    seen = []

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    view = importlib.import_module("analysis.views.metrics")  # the package exports the view as `metrics`
    real = view.generate_latest
    assert gc.isenabled()
    with mock.patch.object(view, "generate_latest", spy):
        assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[0] == 200
    assert seen == [False] and gc.isenabled()
    with mock.patch.object(view, "generate_latest", side_effect=RuntimeError("boom")), pytest.raises(RuntimeError):
        Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}", raise_request_exception=True).get("/metrics")
    assert gc.isenabled()
    gc.disable()
    try:
        assert scrape(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")[0] == 200
        assert not gc.isenabled()
    finally:
        gc.enable()
