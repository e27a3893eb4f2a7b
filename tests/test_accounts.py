"""The team's own sign-in: any active account signs in through ctop's pages (the real form, CSRF
included), sees every page, and is refused by the admin; `manage.py team` manages the accounts."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from analysis.models import Alert, AlertKind, Severity


def sign_in(username: str, password: str) -> tuple[Client, int]:
    """Through the real form: the page's CSRF cookie, then a POST carrying the token."""
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/accounts/login/")
    assert page.status_code == 200 and 'name="csrfmiddlewaretoken"' in page.content.decode()
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        "/accounts/login/", {"username": username, "password": password, "csrfmiddlewaretoken": token, "next": "/"}
    )
    return browser, response.status_code


def team_add(*args: str) -> str:
    out = StringIO()
    call_command("team", "add", *args, stdout=out)
    return re.search(r"with password (\S+)", out.getvalue()).group(1)


@pytest.mark.django_db
def test_a_team_member_signs_in_through_the_form_and_sees_every_page(chain):
    Alert.objects.create(
        chain=chain,
        kind=AlertKind.STALLED,
        summary="stalled",
        opened_at="2026-12-01T00:00Z",
        updated_at="2026-12-01T00:00Z",
    )
    password = team_add("alice")
    browser, status = sign_in("alice", password)
    assert status == 302
    for url in ("/", "/alerts/", "/chains/testnet/", "/chains/testnet/heights/"):
        response = browser.get(url)
        assert response.status_code == 200, url
    assert "alice" in browser.get("/").content.decode()
    assert 'action="/accounts/logout/"' in browser.get("/").content.decode()


@pytest.mark.django_db
def test_the_form_refuses_a_wrong_password_an_inactive_account_and_a_missing_token():
    password = team_add("bob")
    _, status = sign_in("bob", "wrong")
    assert status == 200  # the form again, with its error
    call_command("team", "deactivate", "bob", stdout=StringIO())
    _, status = sign_in("bob", password)
    assert status == 200
    no_token = Client(enforce_csrf_checks=True)
    assert no_token.post("/accounts/login/", {"username": "bob", "password": password}).status_code == 403


@pytest.mark.django_db
def test_a_team_member_is_refused_by_the_admin():
    password = team_add("carol")
    browser, _ = sign_in("carol", password)
    response = browser.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    admin_form = browser.get("/admin/login/")
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        "/admin/login/?next=/admin/", {"username": "carol", "password": password, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 200 and "staff account" in response.content.decode()
    assert admin_form.status_code == 200


@pytest.mark.django_db
def test_signing_out_and_changing_the_password(chain):
    password = team_add("dave")
    browser, _ = sign_in("dave", password)
    token = browser.cookies["csrftoken"].value
    change = browser.post(
        "/accounts/password/",
        {
            "old_password": password,
            "new_password1": "a-new-long-passphrase-42",
            "new_password2": "a-new-long-passphrase-42",
            "csrfmiddlewaretoken": token,
        },
    )
    assert change.status_code == 302 and change["Location"] == "/accounts/password/done/"
    assert browser.get("/").status_code == 200  # still signed in after the change
    assert browser.get("/accounts/logout/").status_code == 405  # signing out is a POST
    out = browser.post("/accounts/logout/", {"csrfmiddlewaretoken": browser.cookies["csrftoken"].value})
    assert out.status_code == 200 and "Signed out" in out.content.decode()
    assert browser.get("/").status_code == 302
    assert sign_in("dave", password)[1] == 200  # the old password no longer works
    assert sign_in("dave", "a-new-long-passphrase-42")[1] == 302


@pytest.mark.django_db
def test_resolving_by_hand_follows_the_permission_not_staff(chain):
    alert = Alert.objects.create(
        chain=chain,
        kind=AlertKind.STALLED,
        severity=Severity.CRITICAL,
        summary="stalled",
        opened_at="2026-12-01T00:00Z",
        updated_at="2026-12-01T00:00Z",
    )
    plain, _ = sign_in("erin", team_add("erin"))
    allowed, _ = sign_in("frank", team_add("frank", "--can-resolve"))
    url = f"/alerts/{alert.pk}/resolve/"
    assert "resolve by hand" not in plain.get(f"/alerts/{alert.pk}/").content.decode()
    assert plain.post(url, {"csrfmiddlewaretoken": plain.cookies["csrftoken"].value}).status_code == 403
    assert "resolve by hand" in allowed.get(f"/alerts/{alert.pk}/").content.decode()
    assert allowed.post(url, {"csrfmiddlewaretoken": allowed.cookies["csrftoken"].value}).status_code == 302
    alert.refresh_from_db()
    assert not alert.is_open and alert.details["resolution"] == "resolved by frank"


@pytest.mark.django_db
def test_marking_validators_as_watched_follows_the_permission(chain):
    from consensus.models import Validator

    Validator.objects.create(chain=chain, address="A" * 40)
    plain, _ = sign_in("jo", team_add("jo"))
    allowed, _ = sign_in("kim", team_add("kim", "--can-watch"))
    page, url = f"/chains/testnet/validators/{'A' * 40}/", f"/chains/testnet/validators/{'A' * 40}/watch/"
    assert ">watch</button>" not in plain.get(page).content.decode()
    assert plain.post(url, {"watch": "1", "csrfmiddlewaretoken": plain.cookies["csrftoken"].value}).status_code == 403
    assert ">watch</button>" in allowed.get(page).content.decode()
    token = allowed.cookies["csrftoken"].value
    assert allowed.post(url, {"watch": "1", "csrfmiddlewaretoken": token}).status_code == 302
    assert '<span class="ok">watched</span>' in plain.get(page).content.decode()
    out = StringIO()
    call_command("team", "list", stdout=out)
    assert "kim: pages, watch\n" in out.getvalue() and "jo: pages\n" in out.getvalue()


@pytest.mark.django_db
def test_team_command_lists_resets_and_refuses_nonsense():
    team_add("gina", "--staff")
    team_add("hal")
    out = StringIO()
    call_command("team", "list", stdout=out)
    assert "gina: pages, resolve, watch, admin" in out.getvalue() and "hal: pages\n" in out.getvalue()
    out = StringIO()
    call_command("team", "reset-password", "hal", stdout=out)
    new = re.search(r"new password for 'hal': (\S+)", out.getvalue()).group(1)
    assert sign_in("hal", new)[1] == 302
    with pytest.raises(CommandError, match="exists already"):
        team_add("hal")
    with pytest.raises(CommandError, match="no account named 'nobody'"):
        call_command("team", "deactivate", "nobody")
