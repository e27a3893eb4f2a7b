"""Watchlists (issue 16 §2): marking validators as ours, channels scoped to them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from analysis.channels import channels_for
from analysis.lifecycle import raise_or_update, resolve
from analysis.models import (
    Alert,
    AlertKind,
    Notification,
    NotificationChannel,
    Severity,
    ValidatorScope,
    WatchedValidator,
)
from consensus.models import Chain, Validator

from .analysishelpers import A, B, C, vid


def watch(address: str, chain: Chain, note: str = "") -> WatchedValidator:
    return WatchedValidator.objects.create(validator=Validator.objects.get(chain=chain, address=address), note=note)


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


