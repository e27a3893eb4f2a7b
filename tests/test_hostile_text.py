"""Trust boundaries, continued: what a hostile endpoint's text, a receiver's reply or a leaked
credential could do (tests/test_hostile_node.py has heights, memory and time). Each test plays one
attack and checks that it is refused and nothing else is hurt."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
from django.utils import timezone

from common import http
from consensus.models import Chain, ChainStatus, Endpoint
from consensus.simulator import SimChain

from .hostile import new_round, store
from .subscriberhelpers import running, target, wait_until

INT64_MAX = 2**63 - 1


# --- 4. hostile text ---


@pytest.mark.django_db
def test_hostile_text_reaches_no_header_no_second_line_and_pings_nobody(chain, settings):
    from django.core import mail

    from analysis.models import Alert, AlertSettings, ChannelKind, Notification, NotificationChannel
    from analysis.notify import TRANSPORTS, send_due, slack_text
    from analysis.runner import MissingVoteAnalyzer

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    AlertSettings.objects.create(chain=chain, blind_after_seconds=0)
    evil = "refused\r\nBcc: everyone@example.com\n<!channel> @everyone <@U123>\u202e"
    ChainStatus.objects.create(
        chain=chain, state="all_failing", reason=evil, updated_at=timezone.now(), since=timezone.now()
    )
    NotificationChannel.objects.create(name="mail", kind=ChannelKind.EMAIL, target="ops@example.com")
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()
    assert send_due() == 1  # once crashed the analyzer with BadHeaderError, forever
    (message,) = mail.outbox
    assert "\n" not in message.subject and "\r" not in message.subject and "Bcc" not in message.extra_headers
    assert "\u202e" not in message.subject + message.body
    # The node's words stay in the alert's details, out of every message (links and markup render there).
    assert "channel" not in message.subject + message.body and "everyone" not in message.subject + message.body
    gap = Alert.objects.get(kind="monitoring_gap")
    assert gap.details["detail"].startswith("refused Bcc: everyone@example.com <!channel>")
    assert "\n" not in gap.details["detail"] and "\u202e" not in gap.details["detail"]
    assert slack_text("<!channel> @everyone") == "&lt;!channel&gt; @\u200beveryone"
    # Any failure to send ends as a failed attempt, never as a crashed process.
    calls = []

    def broken(channel, message):
        calls.append(message.event)
        raise UnicodeError("a bug in a transport")

    NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/x")
    Notification.objects.filter(channel__name="hook").delete()
    from analysis.lifecycle import raise_or_update
    from analysis.models import AlertKind, Severity

    raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary="x")
    original = TRANSPORTS[ChannelKind.WEBHOOK]
    TRANSPORTS[ChannelKind.WEBHOOK] = broken
    try:
        send_due()
    finally:
        TRANSPORTS[ChannelKind.WEBHOOK] = original
    failed = Notification.objects.get(channel__name="hook")
    assert calls and failed.status == "pending" and failed.error == "unexpected UnicodeError"


@pytest.mark.django_db
def test_discord_and_slack_messages_cannot_mention_anyone(chain):
    from analysis.lifecycle import raise_or_update
    from analysis.models import AlertKind, ChannelKind, NotificationChannel, Severity
    from analysis.notify import send_due

    from .receivers import Receiver

    receiver = Receiver()
    try:
        for kind in (ChannelKind.SLACK, ChannelKind.DISCORD):
            NotificationChannel.objects.create(name=kind, kind=kind, target=f"{receiver.url}/{kind}")
        summary = "node says <!channel> <!here|here> @everyone @here <@U123> <https://evil.example|click>"
        raise_or_update(chain, AlertKind.STALLED, None, now=timezone.now(), severity=Severity.CRITICAL, summary=summary)
        assert send_due() == 2
        bodies = dict(receiver.requests)
        slack = bodies["/slack"]["text"] + "\n".join(b["text"]["text"] for b in bodies["/slack"]["blocks"])
        assert "<" not in slack and ">" not in slack  # no <!channel>, <@U123> or link markup survives
        assert "&lt;!channel&gt;" in slack and "@\u200beveryone" in slack and "@\u200bhere" in slack
        discord = bodies["/discord"]
        assert discord["allowed_mentions"] == {"parse": []}  # Discord's own switch: nobody is pinged
    finally:
        receiver.close()


# --- 5. credentials ---

SECRET_URL = "http://ops:s3cr3t-pass@127.0.0.1:9/APIKEY-1234567890"


@pytest.mark.django_db(transaction=True)
def test_credentials_of_a_working_endpoint_reach_no_log_or_status(node, redis_client, caplog):
    async def script(ws):
        await ws.send(new_round(node.status_height() + 1))

    node.ws_script = script
    url = f"http://ops:s3cr3t-pass@127.0.0.1:{node.port}/APIKEY-1234567890"
    caplog.set_level(logging.DEBUG)
    with running([target("secretive", type("N", (), {"url": url})())], redis_client) as runner:
        wait_until(lambda: runner.workers[0].counters.events >= 1, message="events through the secret URL")
        time.sleep(0.3)
    store(redis_client, "secretive")
    assert node.requests and all("APIKEY-1234567890" in r for r in node.requests)  # it was used, in full
    assert f"connected to http://***@127.0.0.1:{node.port}/…" in caplog.text
    status = ChainStatus.objects.get(chain__name="secretive")
    for text in (caplog.text, status.endpoint, status.reason):
        assert "s3cr3t-pass" not in text and "APIKEY" not in text


@pytest.mark.django_db(transaction=True)
def test_credentials_in_endpoint_urls_reach_no_log_page_status_alert_or_error(redis_client, caplog, client):
    from django.contrib.auth import get_user_model

    from analysis.models import Alert, AlertSettings
    from analysis.runner import MissingVoteAnalyzer
    from validators.models import SetIndexState
    from validators.runner import index_chain

    caplog.set_level(logging.DEBUG)
    chain = Chain.objects.create(name="secretive", chain_id="s-1")
    Endpoint.objects.create(chain=chain, url=SECRET_URL)
    AlertSettings.objects.create(chain=chain, blind_after_seconds=0)
    with running([target("secretive", type("N", (), {"url": SECRET_URL})())], redis_client) as runner:
        wait_until(lambda: runner.workers[0]._blind_reason, message="the endpoint refused")
        time.sleep(0.5)  # the blind status reaches Redis
    store(redis_client, "secretive")
    SetIndexState.objects.create(chain=chain, verified_height=0, verified_at=timezone.now())
    assert not index_chain(chain)
    MissingVoteAnalyzer([chain], fetch_sets=False, fetch_commits=False).run_once()
    user = get_user_model().objects.create_user("member", password="pw-for-tests")
    client.force_login(user)
    overview = client.get("/").content.decode()
    shown = [
        caplog.text,
        overview,
        str(list(ChainStatus.objects.values_list("endpoint", "reason"))),
        str(list(Alert.objects.values_list("summary", "details"))),
        str(list(SetIndexState.objects.values_list("last_error", flat=True))),
    ]
    assert ChainStatus.objects.get(chain=chain).state == "all_failing"
    assert Alert.objects.filter(chain=chain, kind="monitoring_gap").exists()
    for text in shown:
        assert "s3cr3t-pass" not in text and "APIKEY" not in text
    assert "http://***@127.0.0.1:9/…" in caplog.text


def test_passwords_of_redis_and_postgresql_are_never_printed(tmp_path):
    import subprocess

    from .conftest import ROOT
    from .procs import database_url

    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "REDIS_URL": "redis://:redis-pw-42@127.0.0.1:9/0",
        "DATABASE_URL": "postgres://postgres:pg-pw-42@127.0.0.1:9/ctop",
    }
    script = f"source {ROOT}/bin/_common.sh; VENV={ROOT}/.venv; check_services"
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "is not reachable" in proc.stderr
    assert "pg-pw-42" not in proc.stderr + proc.stdout and "redis-pw-42" not in proc.stderr + proc.stdout
    env["DATABASE_URL"] = database_url("postgres")  # reachable this time: the Redis line follows
    proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert "Redis is not reachable at redis://***@127.0.0.1:9/0" in proc.stderr
    assert "redis-pw-42" not in proc.stderr


@pytest.mark.django_db
def test_notification_secrets_are_write_only_in_the_admin(client, django_user_model):
    from django.contrib.auth.models import Permission

    from analysis.models import ChannelKind, NotificationChannel

    hook = "https://hooks.slack.com/services/T000/B000/SLACKTOKEN42"
    slack = NotificationChannel.objects.create(name="slack", kind=ChannelKind.SLACK, target=hook)
    tg = NotificationChannel.objects.create(name="tg", kind=ChannelKind.TELEGRAM, target="-1001", secret="123:BOTTOKEN")
    viewer = django_user_model.objects.create_user("viewer", password="pw-for-tests", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_notificationchannel"))
    client.force_login(viewer)
    for channel in (slack, tg):
        page = client.get(f"/admin/analysis/notificationchannel/{channel.pk}/change/").content.decode()
        assert "SLACKTOKEN42" not in page and "BOTTOKEN" not in page
    listing = client.get("/admin/analysis/notificationchannel/").content.decode()
    assert "SLACKTOKEN42" not in listing and "hooks.slack.com/…" in listing
    # An editor's form never sends them back either; a blank field keeps the stored value.
    editor = django_user_model.objects.create_superuser("editor", password="pw-for-tests")
    client.force_login(editor)
    url = f"/admin/analysis/notificationchannel/{tg.pk}/change/"
    assert "BOTTOKEN" not in client.get(url).content.decode()
    form = {"name": "tg", "kind": "telegram", "target": "-1002", "secret": "", "api_url": "", "min_severity": "20"}
    form["validator_scope"] = "all"
    assert client.post(url, form).status_code == 302
    tg.refresh_from_db()
    assert (tg.target, tg.secret) == ("-1002", "123:BOTTOKEN")


# --- 7. a malformed REST reply ---


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "body", [b'{"validators": 5}', b'{"validators": [{"consensus_pubkey": {"key": 7}}]}', b"[1,2]", b"\xff\xfe"]
)
def test_a_malformed_rest_reply_is_one_chains_error_and_the_others_are_indexed(sim, node, body):
    from validators.models import SetIndexState, SetMembership
    from validators.runner import IndexerRunner

    (good_node,) = sim.add_chain(SimChain("good", validators=4, block_time=0.1))
    sim.start()
    node.routes["/cosmos/staking/v1beta1/validators"] = ("200 OK", body)
    good = Chain.objects.create(name="good", chain_id="good")
    Endpoint.objects.create(chain=good, url=good_node.url)
    # The bad chain's RPC is the same simulator (its set is fine); its REST API is the hostile node.
    bad = Chain.objects.create(name="bad", chain_id="good", rest_url=node.url)
    Endpoint.objects.create(chain=bad, url=good_node.url)
    failures = IndexerRunner(lambda: list(Chain.objects.order_by("name")), interval=60).run_once(timeout=30)
    assert failures == 1
    assert SetMembership.objects.filter(chain=good).count() == 4
    assert "the REST reply is malformed" in SetIndexState.objects.get(chain=bad).last_error


# --- 8. heights past bigint in page URLs ---


@pytest.mark.django_db
def test_heights_past_bigint_in_page_urls_are_404_not_500(chain, user_client):
    huge = "99999999999999999999999"
    for url in (f"/chains/testnet/heights/{huge}/", f"/chains/testnet/?height={huge}", f"/alerts/{huge}/"):
        assert user_client.get(url).status_code == 404, url
    assert user_client.get(f"/chains/testnet/heights/?until={huge}").status_code == 404


# --- rounds beyond what a verdict keeps ---


def test_https_through_a_proxy_is_tls_end_to_end(monkeypatch):
    """A secret in the path of an https URL (a Slack webhook) must not cross an http:// proxy in
    clear text: the proxy sees CONNECT host:443, then only TLS."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    seen: list[bytes] = []

    def proxy() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            request = conn.recv(4096)
            seen.append(request)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with contextlib.suppress(OSError):
                seen.append(conn.recv(4096))  # what the client sends inside the tunnel

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
    with pytest.raises(http.HTTPError):
        http.post("https://hooks.example.invalid/services/T0/B0/SLACKTOKEN", json={"text": "x"}, deadline=3)
    thread.join(5)
    server.close()
    assert seen[0].startswith(b"CONNECT hooks.example.invalid:443 ")
    assert seen[1][:1] == b"\x16"  # a TLS ClientHello, not an HTTP request
    assert b"SLACKTOKEN" not in b"".join(seen)
