"""Watchlists (issue 16 §2): marking validators as ours, channels scoped to them, the overview's panel."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analysis import history, watchlist
from analysis.channels import channels_for
from analysis.lifecycle import raise_or_update, resolve
from analysis.models import (
    Alert,
    AlertKind,
    HeightHistory,
    Notification,
    NotificationChannel,
    Severity,
    ValidatorScope,
    VoterSet,
    WatchedValidator,
)
from consensus.models import Chain, Validator
from validators.services import Member, apply_set

from .analysishelpers import A, B, C, D, vid


def watch(address: str, chain: Chain, note: str = "") -> WatchedValidator:
    return WatchedValidator.objects.create(validator=Validator.objects.get(chain=chain, address=address), note=note)


# --- marking from the validator page ---


@pytest.fixture
def watcher(django_user_model):
    """A team member granted the watch permissions (as staff grant them in the admin), not staff."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("watcher", email="", password="pw-for-tests")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="analysis", codename__in=["add_watchedvalidator", "delete_watchedvalidator"]
        )
    )
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    return strict


@pytest.mark.django_db
def test_marking_and_unmarking_through_the_page_form_with_csrf(watcher, net):
    page_url = reverse("analysis:validator", args=["testnet", A])
    url = reverse("analysis:validator-watch", args=["testnet", A])
    html = watcher.get(page_url).content.decode()
    assert "not watched" in html and f'action="{url}"' in html and ">watch</button>" in html
    assert watcher.post(url, {"watch": "1"}).status_code == 403  # no CSRF token: refused
    assert not WatchedValidator.objects.exists()
    token = watcher.cookies["csrftoken"].value
    response = watcher.post(url, {"watch": "1", "note": "<b>our</b> sentry", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == page_url
    mark = WatchedValidator.objects.get()
    assert (mark.validator.address, mark.note, mark.added_by.username) == (A, "<b>our</b> sentry", "watcher")
    html = watcher.get(page_url).content.decode()
    assert '<span class="ok">watched</span>' in html and "by watcher" in html
    assert "&lt;b&gt;our&lt;/b&gt; sentry" in html and "<b>our</b>" not in html  # escaped
    assert "stop watching" in html
    watcher.post(url, {"watch": "1", "csrfmiddlewaretoken": token})  # twice: still one mark, the first
    assert WatchedValidator.objects.get().note == "<b>our</b> sentry"
    assert watcher.post(url, {"watch": "0", "csrfmiddlewaretoken": token}).status_code == 302
    assert not WatchedValidator.objects.exists()
    assert watcher.get(url).status_code == 405  # POST only


@pytest.mark.django_db
def test_a_team_member_without_the_permission_sees_the_mark_but_no_button(user_client, net):
    watch(A, net)
    url = reverse("analysis:validator-watch", args=["testnet", A])
    html = user_client.get(reverse("analysis:validator", args=["testnet", A])).content.decode()
    assert '<span class="ok">watched</span>' in html and "stop watching" not in html and url not in html
    assert user_client.post(url, {"watch": "0"}).status_code == 403
    assert user_client.post(reverse("analysis:validator-watch", args=["testnet", B]), {"watch": "1"}).status_code == 403
    assert WatchedValidator.objects.count() == 1
    html = user_client.get(reverse("analysis:validator", args=["testnet", B])).content.decode()
    assert "not watched" in html and ">watch</button>" not in html
    anonymous = Client().post(url, {"watch": "0"})
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert WatchedValidator.objects.count() == 1


@pytest.mark.django_db
def test_the_admin_lists_filters_and_adds_watched_validators(staff_client, net):
    other = Chain.objects.create(name="othernet", chain_id="other-1")
    theirs = Validator.objects.create(chain=other, address="F" * 40, moniker="far-away")
    watch(A, net, note="ours, in Frankfurt")
    WatchedValidator.objects.create(validator=theirs)
    changelist = reverse("admin:analysis_watchedvalidator_changelist")
    html = staff_client.get(changelist).content.decode()
    assert "ours, in Frankfurt" in html and "far-away" in html
    assert f'href="/chains/testnet/validators/{A}/"' in html  # the page link
    filtered = staff_client.get(changelist, {"validator__chain__id__exact": other.pk}).content.decode()
    assert "far-away" in filtered and "ours, in Frankfurt" not in filtered
    found = staff_client.get(changelist, {"q": "frankfurt"}).content.decode()
    assert "ours, in Frankfurt" in found and "far-away" not in found
    add = reverse("admin:analysis_watchedvalidator_add")
    assert staff_client.post(add, {"validator": vid(net, B), "note": ""}).status_code == 302
    assert WatchedValidator.objects.get(validator__address=B).added_by.username == "staff"
    # One mark per validator.
    assert staff_client.post(add, {"validator": vid(net, B), "note": "again"}).status_code == 200
    assert WatchedValidator.objects.filter(validator__address=B).count() == 1


# --- channel routing ---


def channel(name: str, **kw) -> NotificationChannel:
    chains = kw.pop("chains", [])
    chosen = kw.pop("validators", [])
    c = NotificationChannel.objects.create(name=name, kind="webhook", target="http://127.0.0.1:9/x", **kw)
    c.chains.set(chains)
    c.validators.set(chosen)
    return c


def routed(alert: Alert) -> set[str]:
    return set(Notification.objects.filter(alert=alert).values_list("channel__name", flat=True))


@pytest.mark.django_db
def test_channels_take_the_alerts_of_their_validator_scope(net):
    other = Chain.objects.create(name="othernet", chain_id="other-1")
    watch(A, net)
    channel("everything")
    channel("ours", validator_scope=ValidatorScope.WATCHED)
    channel("ours-critical", validator_scope=ValidatorScope.WATCHED, min_severity=Severity.CRITICAL)
    channel("ours-elsewhere", validator_scope=ValidatorScope.WATCHED, chains=[other])
    channel("ours-here", validator_scope=ValidatorScope.WATCHED, chains=[net])
    channel("c-only", validator_scope=ValidatorScope.CHOSEN, validators=[vid(net, C)])
    channel("off", validator_scope=ValidatorScope.WATCHED, enabled=False)
    now = timezone.now()

    def opened(kind, address, severity=Severity.WARNING, chain=net):
        validator = vid(chain, address) if address else None
        return raise_or_update(chain, kind, validator, now=now, severity=severity, summary=f"{kind} {address}")

    assert routed(opened(AlertKind.MISSED_VOTES, A)) == {"everything", "ours", "ours-here"}
    assert routed(opened(AlertKind.MISSED_VOTES, B)) == {"everything"}
    assert routed(opened(AlertKind.MISSED_VOTES, C)) == {"everything", "c-only"}
    assert routed(opened(AlertKind.SLOW_VALIDATOR, A, Severity.CRITICAL)) == {
        "everything",
        "ours",
        "ours-critical",
        "ours-here",
    }
    assert routed(opened(AlertKind.SLOW_VALIDATOR, B, Severity.INFO)) == set()  # under every minimum
    # Chain-level alerts ignore the validator scope; the chain filter and the minimum still hold.
    halt = opened(AlertKind.HALT_RISK, None, Severity.CRITICAL)
    assert routed(halt) == {"everything", "ours", "ours-critical", "ours-here", "c-only"}
    assert routed(opened(AlertKind.STALLED, None)) == {"everything", "ours", "ours-here", "c-only"}
    Validator.objects.create(chain=other, address=A)
    gap = opened(AlertKind.MONITORING_GAP, None, chain=other)
    assert routed(gap) == {"everything", "ours", "ours-elsewhere", "c-only"}
    assert routed(opened(AlertKind.MISSED_VOTES, A, chain=other)) == {"everything"}  # that A is not watched
    assert set(channels_for(halt).values_list("name", flat=True)) == routed(halt)


@pytest.mark.django_db
def test_a_channel_told_of_an_opening_is_told_of_its_resolution(net):
    mark = watch(A, net)
    channel("ours", validator_scope=ValidatorScope.WATCHED)
    now = timezone.now()
    alert = raise_or_update(net, AlertKind.MISSED_VOTES, vid(net, A), now=now, severity=Severity.WARNING, summary="x")
    mark.delete()  # unwatched while the alert is open
    resolve(net, AlertKind.MISSED_VOTES, vid(net, A), now=now + timedelta(minutes=1))
    assert set(Notification.objects.filter(alert=alert).values_list("event", flat=True)) == {"opened", "resolved"}
    # A validator never watched: nothing either way.
    alert = raise_or_update(net, AlertKind.MISSED_VOTES, vid(net, B), now=now, severity=Severity.WARNING, summary="y")
    resolve(net, AlertKind.MISSED_VOTES, vid(net, B), now=now + timedelta(minutes=1))
    assert not Notification.objects.filter(alert=alert).exists()


@pytest.mark.django_db
def test_the_admin_edits_a_channels_scope(staff_client, net):
    add = reverse("admin:analysis_notificationchannel_add")
    form = {
        "name": "ours",
        "kind": "webhook",
        "target": "http://127.0.0.1:9/x",
        "min_severity": Severity.WARNING,
        "validator_scope": ValidatorScope.CHOSEN,
        "enabled": "on",
    }
    refused = staff_client.post(add, form)
    assert refused.status_code == 200 and "Choose at least one validator" in refused.content.decode()
    assert staff_client.post(add, {**form, "validators": [vid(net, C)]}).status_code == 302
    saved = NotificationChannel.objects.get(name="ours")
    assert list(saved.validators.values_list("address", flat=True)) == [C]
    html = staff_client.get(reverse("admin:analysis_notificationchannel_change", args=[saved.pk])).content.decode()
    assert "admin-autocomplete" in html  # chosen by search, not from a list of every validator


# --- the overview's panel ---


def history_scene(chain: Chain) -> dict[str, int]:
    """Heights 1-250 in the history tier. A, B, C, D from height 1; B leaves at 201. D misses 31-40
    and 201-210, and precommits late in round 0 of 245 (two rounds: missed); B misses 50, 60, 150;
    A votes nil at 248; 249 is unknown to everyone; 250 was judged from the chain's commit."""
    apply_set(chain.pk, 201, [Member(a, 10, i) for i, a in enumerate((A, C, D))])
    ids = {a: vid(chain, a) for a in (A, B, C, D)}
    sets: dict[tuple[int, ...], VoterSet] = {}
    rows = []
    now = timezone.now()
    for h in range(1, 251):
        members = (A, B, C, D) if h <= 200 else (A, C, D)
        votes = {ids[a]: (10, "S", "S") for a in members}
        if 31 <= h <= 40 or 201 <= h <= 210:
            votes[ids[D]] = (10, "M", "M")
        if h in (50, 60, 150):
            votes[ids[B]] = (10, "S", "M")
        if h == 245:
            votes = {v: (10, "SS", "SS") for v in votes}
            votes[ids[D]] = (10, "SS", "MS")
        if h == 248:
            votes[ids[A]] = (10, "N", "N")
        if h == 249:
            votes = {v: (10, "U", "U") for v in votes}
        voters = sorted(votes)
        key = tuple(voters)
        if key not in sets:
            sets[key] = VoterSet.objects.create(chain=chain, validators=voters, digest=history.digest(voters))
        rows.append(
            HeightHistory(
                chain=chain,
                height=h,
                judged_at=now - timedelta(seconds=300 - h),
                voters=sets[key],
                rounds=2 if h == 245 else 1,
                unknown=h == 249,
                from_commit=h == 250,
                letters=history.pack(votes, voters),
            )
        )
    HeightHistory.objects.bulk_create(rows)
    return ids


@pytest.mark.django_db
def test_the_panel_shows_each_watched_validators_figures(user_client, net):
    ids = history_scene(net)
    for a in (A, B, D):
        watch(a, net)
    Validator.objects.filter(address=A).update(moniker="<script>alpha</script>")
    now = timezone.now()
    raise_or_update(net, AlertKind.MISSED_VOTES, ids[D], now=now, severity=Severity.CRITICAL, summary="d misses")
    raise_or_update(net, AlertKind.SLOW_VALIDATOR, ids[D], now=now, severity=Severity.WARNING, summary="d slow")
    raise_or_update(net, AlertKind.STALLED, None, now=now, severity=Severity.CRITICAL, summary="stalled")
    rows = {r.validator.address: r for r in watchlist.panel()}
    assert set(rows) == {A, B, D}  # C is not watched
    d, b, a = rows[D], rows[B], rows[A]
    # D: 151-250 hold 201-210 and 245; the whole 250 add 31-40.
    assert (d.judged_recent, d.missed_recent, d.judged, d.missed) == (100, 11, 250, 21)
    assert (d.recent, d.long) == (89.0, pytest.approx(91.6))
    # B: its heights end at 200 when it left the set: 101-200 hold 150; 1-200 hold 50, 60 and 150.
    assert (b.judged_recent, b.missed_recent, b.judged, b.missed) == (100, 1, 200, 3)
    assert (b.recent, b.long) == (99.0, 98.5)
    assert (a.judged_recent, a.missed_recent, a.judged, a.missed) == (100, 0, 250, 0)
    # The same figures as the validator page's (history.validator_heights).
    for row in rows.values():
        for count, judged, missed in ((100, row.judged_recent, row.missed_recent), (10_000, row.judged, row.missed)):
            heights = history.validator_heights(net.pk, row.validator.pk, count)
            assert (len(heights), sum(h.missed for h in heights)) == (judged, missed)
    assert [h for h, _, _ in a.cells] == list(range(231, 251))
    assert "".join(letter for _, letter, _ in a.cells) == "S" * 17 + "NUS"
    assert a.cells[-1][2] and not a.cells[-2][2]  # 250 from the commit
    assert "".join(letter for _, letter, _ in d.cells)[14] == "M"  # 245: missed in round 0
    assert [h for h, _, _ in b.cells] == list(range(181, 201))
    assert (d.open_alerts, d.worst, a.open_alerts) == (2, Severity.CRITICAL, 0)
    assert all(r.jail_risk is None for r in rows.values())

    html = user_client.get(reverse("analysis:overview")).content.decode()
    panel = html.split('id="my-validators"')[1]
    assert "89.00%" in panel and "91.60%" in panel and "98.50%" in panel and "100.00%" in panel
    assert "&lt;script&gt;alpha&lt;/script&gt;" in panel and "<script>alpha" not in html
    assert f'href="/alerts/?chain=testnet&amp;validator={D}">2 open</a>' in panel
    assert panel.count('class="num dim" title="not known') == 3 and "—" in panel
    assert panel.count('href="/chains/testnet/heights/') == 60
    assert 'class="c-M" href="/chains/testnet/heights/245/"' in panel


@pytest.mark.django_db
def test_the_overview_reads_the_panel_in_constant_queries(user_client, net):
    history_scene(net)
    user_client.get(reverse("analysis:overview"))  # sessions, content types: warm
    with CaptureQueriesContext(connection) as none:
        assert "No watched validators" in user_client.get(reverse("analysis:overview")).content.decode()
    watch(A, net)
    with CaptureQueriesContext(connection) as one:
        user_client.get(reverse("analysis:overview"))
    other = Chain.objects.create(name="othernet", chain_id="other-1")
    for address in ("1" * 40, "2" * 40):
        WatchedValidator.objects.create(validator=Validator.objects.create(chain=other, address=address))
    for address in (B, D):
        watch(address, net)
    with CaptureQueriesContext(connection) as five:
        html = user_client.get(reverse("analysis:overview")).content.decode()
    assert html.split('id="my-validators"')[1].count('class="strip"') == 5
    # The watch list, the history read (in its own transaction, JIT off: four statements), the alerts,
    # the chain's jail-risk counters.
    assert len(five) == len(one) == len(none) + 6
