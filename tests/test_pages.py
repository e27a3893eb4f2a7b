"""The team's pages with Django's test client: content, filters, permissions, CSRF."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from analysis.models import Alert, AlertKind, Notification, NotificationChannel, Severity
from analysis.runner import MissingVoteAnalyzer
from consensus.models import ChainStatus, Round, RoundStep, Step, Validator
from validators.services import Member, apply_set

from .analysishelpers import OLD, A, B, C, D, all_sign, play


@pytest.fixture
def scene(net):
    """Heights 10-17 of the test chain: D is down from 12 on (an open missed-votes alert), 18 is in
    progress at round 1 with C prevoting nil and D absent. 11-16 are judged."""
    Validator.objects.filter(address=A).update(moniker="alpha-validator")
    for h in (10, 11):
        play(net, h, all_sign())
    for h in range(12, 18):
        play(net, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S")}})
    started = timezone.now() - timedelta(seconds=2)
    play(net, 18, {0: {A: ("N", "N"), B: ("N", "N"), C: ("N", "N")}}, started=started)
    play(net, 18, {1: {A: ("S", ""), B: ("S", ""), C: ("N", "")}}, started=started)
    Round.objects.filter(chain=net, height=18, round=1).update(proposer=Validator.objects.get(address=B))
    RoundStep.objects.create(chain=net, height=18, round=1, step=Step.PREVOTE, seen_at=started)
    ChainStatus.objects.create(chain=net, state="connected", endpoint="http://n1:26657", updated_at=timezone.now())
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()
    return net


def page(client, name, *args, **query) -> str:
    response = client.get(reverse(f"analysis:{name}", args=args), query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


PAGES = [
    ("overview", ()),
    ("alerts", ()),
    ("alert", (1,)),
    ("chain", ("testnet",)),
    ("chain-fragment", ("testnet",)),
    ("heights", ("testnet",)),
    ("height", ("testnet", 12)),
    ("validator", ("testnet", A)),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_users_are_sent_to_login(client, name, args):
    response = client.get(reverse(f"analysis:{name}", args=args))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.django_db
def test_overview_shows_each_chain_with_its_latest_round_and_open_alerts(user_client, scene):
    html = page(user_client, "overview")
    assert 'href="/chains/testnet/"' in html and ">18<" in html and ">Prevote<" in html
    assert "connected" in html and "http://n1:26657" in html
    # D's missed-votes alert: 5 heights in a row, a warning until it reaches 25 (analysis.escalation).
    assert "1 warning" in html and "critical" not in html


@pytest.mark.django_db
def test_live_view_shows_the_newest_round_validator_by_validator(user_client, scene):
    html = page(user_client, "chain", "testnet")
    assert 'data-height="18"' in html and 'data-round="1"' in html and "· Prevote" in html
    assert "BBBBBBBBBBBB" in html  # round 1's proposer, shortened
    assert "alpha-validator" in html
    # A and B prevoted the block (50%), C nil (25%), D absent; nobody precommitted yet.
    assert "block 50.0% · nil 25.0% · absent 25.0%" in html
    assert "block 0.0% · nil 0.0% · absent 100.0%" in html
    assert html.count('<td class="m-absent"') == 5  # D's prevote + four precommits
    assert 'href="?height=18&round=0"' in html  # the earlier round is reachable
    assert "new WebSocket" in html  # following live


@pytest.mark.django_db
def test_live_view_filters_sorts_and_shows_earlier_rounds(user_client, scene):
    html = page(user_client, "chain", "testnet", round=0, height=18)
    assert 'data-round="0"' in html and "block 0.0% · nil 75.0%" in html
    assert "new WebSocket" not in html  # a past round does not follow the chain
    html = page(user_client, "chain-fragment", "testnet", missing=1)
    # Everyone lacks a precommit in round 1, so all four are listed; with prevotes only D would be.
    assert html.count('<tr class="missing">') == 4
    html = page(user_client, "chain", "testnet", height=12, missing=1)
    assert html.count('<tr class="missing">') == 1 and "DDDDDDDDDDDD" in html
    by_name = page(user_client, "chain-fragment", "testnet", sort="name").split('id="validators"')[1]
    assert by_name.index("alpha-validator") < by_name.index("BBBBBBBBBBBB")
    assert user_client.get(reverse("analysis:chain", args=["testnet"]), {"height": "x"}).status_code == 404
    assert user_client.get(reverse("analysis:chain", args=["nope"])).status_code == 404


@pytest.mark.django_db
def test_heights_grid_marks_every_validator_at_every_judged_height(user_client, scene):
    html = page(user_client, "heights", "testnet")
    # 11-16 judged (10 was the first height seen, 18 started too recently for 17); D missed 12-16.
    assert html.count('<td class="c-M"') == 5
    assert 'title="12: M"' in html and 'title="11: S"' in html
    assert 'href="/chains/testnet/heights/12/"' in html
    only_missing = page(user_client, "heights", "testnet", missing=1)
    assert "DDDDDDDDDDDD" in only_missing and "alpha-validator" not in only_missing


@pytest.mark.django_db
def test_height_detail_lists_rounds_votes_and_steps(user_client, scene):
    html = page(user_client, "height", "testnet", 18)
    assert "round 0" in html and "round 1" in html and "Prevote +0.000s" in html
    assert html.count("∅ nil") == 7  # round 0: 3 prevotes + 3 precommits; round 1: C's prevote
    html = page(user_client, "height", "testnet", 12)
    assert "1 validator missed votes" in html and "· absent" in html


@pytest.mark.django_db
def test_alerts_list_filters_and_detail(user_client, scene):
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES)
    Alert.objects.create(
        chain=scene,
        kind=AlertKind.STALLED,
        severity=Severity.CRITICAL,
        opened_at=OLD,
        updated_at=OLD,
        resolved_at=OLD,
        is_open=False,
        summary="no new height for 90s (stuck at 9)",
    )
    channel = NotificationChannel.objects.create(name="ops-hook", kind="webhook", target="http://127.0.0.1:9/x")
    Notification.objects.create(alert=alert, channel=channel, event="opened", status="sent", next_attempt_at=OLD)
    open_page = page(user_client, "alerts")
    assert alert.summary in open_page and "stuck at 9" not in open_page
    assert "stuck at 9" in page(user_client, "alerts", state="resolved")
    assert "stuck at 9" not in page(user_client, "alerts", state="all", kind="missed_votes")
    assert alert.summary in page(user_client, "alerts", state="all", validator=D.lower())
    assert alert.summary not in page(user_client, "alerts", validator="alpha")
    assert alert.summary not in page(user_client, "alerts", chain="other")
    assert "stuck at 9" in page(user_client, "alerts", state="all", severity=str(Severity.CRITICAL))
    detail = page(user_client, "alert", alert.pk)
    assert "ops-hook" in detail and "sent" in detail and 'href="/chains/testnet/heights/12/"' in detail
    assert "resolve by hand" not in detail  # needs the resolve permission


@pytest.mark.django_db
def test_resolving_by_hand_needs_the_permission_and_csrf(user_client, scene, django_user_model):
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES)
    url = reverse("analysis:alert-resolve", args=[alert.pk])
    assert user_client.get(url).status_code == 405  # POST only
    assert user_client.post(url).status_code == 403  # a team member without analysis.resolve_alert
    assert Alert.objects.get(pk=alert.pk).is_open
    staff = django_user_model.objects.create_superuser("boss", email="", password="pw-for-tests")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    assert strict.post(url).status_code == 403  # no CSRF token
    detail = strict.get(reverse("analysis:alert", args=[alert.pk])).content.decode()
    assert "resolve by hand" in detail
    token = strict.cookies["csrftoken"].value
    assert strict.post(url, {"csrfmiddlewaretoken": token}).status_code == 302
    resolved = Alert.objects.get(pk=alert.pk)
    assert not resolved.is_open and resolved.details["resolution"] == "resolved by boss"


@pytest.mark.django_db
def test_validator_page_charts_participation_and_lists_history(user_client, scene):
    apply_set(scene.pk, 15, [Member(a, 20 if a == D else 10, i) for i, a in enumerate((A, B, C, D))])
    html = page(user_client, "validator", "testnet", D.lower())
    assert '<svg id="participation"' in html and "missed 5 of 6" in html
    assert 'href="/chains/testnet/heights/16/"' in html  # a recent miss
    participation = html.split('<svg id="participation"')[1].split("</svg>")[0]
    assert participation.count('<rect class="mark') == 1  # heights 11-16 were judged together: one bucket
    assert ">15<" in html and ">20<" in html  # power raised to 20 at height 15
    assert "missed votes" in html  # its alert
    assert user_client.get(reverse("analysis:validator", args=["testnet", "00" * 20])).status_code == 404


@pytest.mark.django_db
def test_admin_links_to_the_pages_and_back(staff_client, scene):
    chains = staff_client.get(reverse("admin:consensus_chain_changelist")).content.decode()
    assert 'href="/chains/testnet/"' in chains
    alerts = staff_client.get(reverse("admin:analysis_alert_changelist")).content.decode()
    alert = Alert.objects.get(kind=AlertKind.MISSED_VOTES)
    assert f'href="/alerts/{alert.pk}/"' in alerts
    validators = staff_client.get(reverse("admin:consensus_validator_changelist")).content.decode()
    assert f'href="/chains/testnet/validators/{A}/"' in validators
    live = page(staff_client, "chain", "testnet")
    assert f'href="/admin/consensus/chain/{scene.pk}/change/"' in live


@pytest.mark.django_db
def test_pages_without_data_say_what_to_run(user_client, chain):
    assert "is subscribe_events running?" in page(user_client, "chain", "testnet")
    assert "analyze missing-votes" in page(user_client, "heights", "testnet")
    ChainStatus.objects.create(chain=chain, state="all_failing", updated_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert "all_failing" in page(user_client, "overview")
