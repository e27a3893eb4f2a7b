"""Each channel kind's message (issue 16 §4) for a validator with a hostile moniker: it names the
chain, the validator (moniker and short address), the kind, the heights, the severity and the link,
and nothing in the moniker becomes markup, a mention or a mail header. Email goes through a real
SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from email import message_from_bytes
from email.policy import default as default_policy
from html.parser import HTMLParser

import pytest
from aiosmtpd.controller import Controller
from django.utils import timezone

from analysis.lifecycle import raise_or_update
from analysis.models import AlertKind, ChannelKind, NotificationChannel, Severity
from analysis.notify import send_due
from consensus.models import Validator

from .conftest import ROOT

EVIL = "<b>x</b> @everyone <!channel> *bold* \r\nBcc: evil@example.com"
# The moniker as one line (CR and LF become a space, runs of spaces one).
FLAT = "<b>x</b> @everyone <!channel> *bold* Bcc: evil@example.com"
ADDRESS = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"


@pytest.fixture
def open_evil(chain, settings):
    """Opens the hostile validator's alert (after the test made its channel)."""
    settings.CTOP = {**settings.CTOP, "BASE_URL": "https://ctop.example.com"}
    return lambda: _open(chain)


def _open(chain):
    validator = Validator.objects.create(chain=chain, address=ADDRESS, moniker=EVIL)
    details = {"since_height": 90, "missed": 7, "last_missed": 96, "heights": [96]}
    return raise_or_update(
        chain,
        AlertKind.MISSED_VOTES,
        validator.pk,
        now=timezone.now(),
        severity=Severity.WARNING,
        summary="missed votes in 7 of the last 20 heights (7 in a row, solo)",
        height=96,
        details=details,
    )


def channel(kind, target, **kw) -> NotificationChannel:
    return NotificationChannel.objects.create(name=kind, kind=kind, target=target, **kw)


@pytest.mark.django_db
def test_slack_blocks_escape_the_moniker_and_ping_nobody(open_evil, receiver):
    channel(ChannelKind.SLACK, receiver.url + "/slack")
    evil_alert = open_evil()
    assert send_due() == 1
    ((_, body),) = receiver.requests
    header, section, link = body["blocks"]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    moniker = "&lt;b&gt;x&lt;/b&gt; @\u200beveryone &lt;!channel&gt; *bold* Bcc: evil@example.com"
    assert body["text"] == f"[ctop WARNING] missed votes on testnet: {moniker} (ABCDEF01)"
    assert section["text"] == {
        "type": "plain_text",
        "text": "missed votes in 7 of the last 20 heights (7 in a row, solo)\nheights 90-96: 7 missed",
    }
    # The only markup is ctop's own link; the moniker's <!channel> and <b> cannot form.
    assert link["text"] == {
        "type": "mrkdwn",
        "text": f"<https://ctop.example.com/alerts/{evil_alert.pk}/|Open alert {evil_alert.pk}>",
    }
    everything = json.dumps([body["text"], header, section], ensure_ascii=False)
    assert "<" not in everything and ">" not in everything and "@everyone" not in everything


@pytest.mark.django_db
def test_discord_embed_escapes_markdown_and_allows_no_mention(open_evil, receiver):
    channel(ChannelKind.DISCORD, receiver.url + "/discord")
    evil_alert = open_evil()
    assert send_due() == 1
    ((_, body),) = receiver.requests
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    moniker = r"\<b\>x\</b\> @" + "\u200beveryone " + r"\<!channel\> \*bold\* Bcc: evil@example.com"
    assert {f["name"]: f["value"] for f in embed["fields"]} == {
        "Chain": "testnet",
        "Validator": rf"{moniker} \(ABCDEF01\)",
        "Severity": "warning",
        "Heights": "heights 90\\-96: 7 missed",
    }
    assert embed["url"] == f"https://ctop.example.com/alerts/{evil_alert.pk}/"
    assert embed["description"] == r"missed votes in 7 of the last 20 heights \(7 in a row, solo\)"
    for text in (body["content"], embed["title"]):
        assert moniker in text and "*bold*" not in text and "@everyone" not in text


def test_a_long_slack_header_is_cut_between_escapes():
    from analysis.formats import slack_cut

    cut = slack_cut("<" * 200, 150)
    assert len(cut) <= 150 and cut.endswith("&lt;…") and cut.count("&lt;") == (len(cut) - 1) // 4
    assert slack_cut("short & sweet", 150) == "short &amp; sweet"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text += data


@pytest.mark.django_db
def test_telegram_html_escapes_the_moniker(open_evil, receiver):
    channel(ChannelKind.TELEGRAM, "-100200300", secret="123:ABC", api_url=receiver.url)
    evil_alert = open_evil()
    assert send_due() == 1
    ((_, body),) = receiver.requests
    assert body["parse_mode"] == "HTML" and body["link_preview_options"] == {"is_disabled": True}
    assert "&lt;b&gt;x&lt;/b&gt; @everyone &lt;!channel&gt; *bold* Bcc: evil@example.com" in body["text"]
    parsed = Tags()
    parsed.feed(body["text"])
    link = f"https://ctop.example.com/alerts/{evil_alert.pk}/"
    assert parsed.tags == [("b", []), ("a", [("href", link)])]  # ctop's own tags, none of the moniker's
    assert parsed.text == (
        f"[ctop WARNING] missed votes on testnet: {FLAT} (ABCDEF01)\n"
        "missed votes in 7 of the last 20 heights (7 in a row, solo)\n"
        f"heights 90-96: 7 missed\nOpen alert {evil_alert.pk}"
    )


class Inbox:
    def __init__(self) -> None:
        self.envelopes = []

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.DEFAULT_FROM_EMAIL = "ctop@example.com"
    yield inbox
    controller.stop()


@pytest.mark.django_db
def test_email_through_a_real_smtp_server_adds_no_header(open_evil, smtp):
    channel(ChannelKind.EMAIL, "ops@example.com")
    evil_alert = open_evil()
    assert send_due() == 1
    (envelope,) = smtp.envelopes
    assert (envelope.mail_from, envelope.rcpt_tos) == ("ctop@example.com", ["ops@example.com"])
    message = message_from_bytes(envelope.original_content, policy=default_policy)
    assert "Bcc" not in message and message.get_all("To") == ["ops@example.com"]
    assert str(message["Subject"]) == f"[ctop WARNING] missed votes on testnet: {FLAT} (ABCDEF01)"
    body = message.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends
    link = f"https://ctop.example.com/alerts/{evil_alert.pk}/"
    assert body.startswith(
        f"[ctop WARNING] missed votes on testnet: {FLAT} (ABCDEF01)\n"
        "missed votes in 7 of the last 20 heights (7 in a row, solo)\n"
        f"heights 90-96: 7 missed\n{link}\n\n"
    )
    assert "validator short: ABCDEF01\n" in body and f"validator: {ADDRESS}\n" in body


def settings_of(env: dict, names: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh process with `env` and print `names` (comma-separated)."""
    code = f"from ctop_project import settings as s; print([getattr(s, n, None) for n in {names.split(',')!r}])"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("EMAIL", "CTOP_BASE"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DEBUG": "true", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_mail_and_the_base_url_are_read_from_the_environment():
    default = settings_of({}, "EMAIL_HOST,EMAIL_PORT,DEFAULT_FROM_EMAIL,EMAIL_TIMEOUT,CTOP")
    host, port, sender, timeout, ctop = eval(default.stdout)  # noqa: S307 (our own repr)
    assert (host, port, sender, timeout, ctop["BASE_URL"]) == ("localhost", 25, "ctop@localhost", 10, "")
    env = {
        "EMAIL_URL": "smtp+tls://ctop:mail-pw-42@mail.example.com:587",
        "DEFAULT_FROM_EMAIL": "alerts@example.com",
        "CTOP_BASE_URL": "https://ctop.example.com/team/",
    }
    out = settings_of(env, "EMAIL_HOST,EMAIL_PORT,EMAIL_USE_TLS,EMAIL_HOST_USER,EMAIL_HOST_PASSWORD,DEFAULT_FROM_EMAIL")
    assert eval(out.stdout) == ["mail.example.com", 587, True, "ctop", "mail-pw-42", "alerts@example.com"]  # noqa: S307
    assert eval(settings_of(env, "CTOP").stdout)[0]["BASE_URL"] == "https://ctop.example.com/team"  # noqa: S307
    # A base URL that is not http(s), or carries credentials, stops the process without printing them.
    for bad in ("ftp://ctop.example.com", "https://admin:url-pw-42@ctop.example.com", "ctop.example.com"):
        proc = settings_of({"CTOP_BASE_URL": bad}, "CTOP")
        assert proc.returncode != 0 and "CTOP_BASE_URL must" in proc.stderr, bad
        assert "url-pw-42" not in proc.stderr
