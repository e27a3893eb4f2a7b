"""Trust boundaries: what a hostile or broken endpoint can do to ctop, and why it cannot.

Each test plays one attack from a fake node (tests.hostile) or feeds the code's own decoders, and
checks both sides: the attack is refused (dead-lettered or logged with a reason) and nothing else
is hurt (the latest height, memory, the other chain).
"""

from __future__ import annotations

import contextlib
import logging
import time

import psutil
import pytest

from common import http
from consensus import protocol as p
from consensus.ingest import StreamConsumer
from consensus.ingest.decode import Batch, decode_into
from consensus.models import Chain, ChainStatus, DeadLetter, Endpoint, Gap, Round
from consensus.protocol.stream import KIND_FRAMES, KIND_GAP, StreamEntry, encode_frames
from consensus.simulator import SimChain
from consensus.streams import decode_last_height, encode_last_height, last_height_key, stream_key
from consensus.subscriber import Options

from .hostile import HostileNode, frame_header, new_round, vote
from .subscriberhelpers import FAST, entries_of_kind, running, target, wait_until

INT64_MAX = 2**63 - 1
HOSTILE = Options(**{**FAST.__dict__, "message_deadline": 1.0})


@pytest.fixture
def node():
    n = HostileNode().start()
    yield n
    n.stop()


def store(client, *names: str) -> None:
    """Everything in the streams of `names` into PostgreSQL (a real consumer, until idle)."""
    chains = [Chain.objects.get_or_create(name=n)[0] for n in names]
    StreamConsumer(chains, client=client, consumer="t", block_ms=100).run(idle_exit=True, pipelined=False)


def latest_round(name: str) -> int | None:
    return Round.objects.filter(chain__name=name).order_by("-height").values_list("height", flat=True).first()


# --- 1. forged heights ---


@pytest.mark.django_db(transaction=True)
def test_forged_heights_are_refused_dead_lettered_and_move_no_latest_height(node, redis_client):
    async def script(ws):
        if node.connections > 1:
            return  # the attack once; a reconnection (the feed goes quiet) gets silence
        await ws.send(new_round(101))
        await ws.send(new_round(INT64_MAX))  # stored, it would be "the latest height" for good
        await ws.send(vote(INT64_MAX + 1))  # past bigint: it broke every later status write
        await ws.send(new_round(102))

    node.ws_script = script
    with running([target("hostile", node)], redis_client, options=HOSTILE) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.counters.events >= 2, message="the honest frames")
        # The subscriber refuses the forged height it can read; the one past int64 is no height to
        # it at all: it goes on as an undecodable frame, and stream_events dead-letters it.
        assert worker.counters.refused == 1
        assert worker.last_height == 102
    store(redis_client, "hostile")
    assert set(Round.objects.filter(chain__name="hostile").values_list("height", flat=True)) == {101, 102}
    letters = sorted(DeadLetter.objects.filter(chain__name="hostile").values_list("reason", flat=True))
    assert len(letters) == 2
    assert "out of range [1, 9223372036854775807]" in letters[0]
    assert "refused by the subscriber: height 9223372036854775807 is outside the plausible heights" in letters[1]
    record = decode_last_height(redis_client.get(last_height_key("hostile")))
    assert record is not None and record[0] == 102
    status = ChainStatus.objects.get(chain__name="hostile")
    assert status.height is not None and status.height <= 102
    assert all(g["to"] <= 200 for g in entries_of_kind(redis_client, "hostile", KIND_GAP))


@pytest.mark.django_db
def test_an_event_whose_quick_peek_disagrees_with_its_decoding_is_refused_at_decode(chain):
    # The subscriber's peek reads the first "height" it finds; the decoder reads the field itself.
    # A frame that shows them different heights must still be judged by the height it decodes to.
    sneaky = new_round(101).replace('"value":{', '"value":{"x":{"height":"101"},', 1)
    sneaky = sneaky.replace('"height":"101","round"', f'"height":"{INT64_MAX}","round"', 1)
    assert p.peek_frame(sneaky).height == 101 and p.decode_frame(sneaky).height == INT64_MAX
    entry = StreamEntry(KIND_FRAMES, "testnet", time.time_ns(), encode_frames([sneaky.encode()]), window=(1, 200))
    batch = Batch()
    decode_into(batch, "s", b"1-0", entry.to_fields(), chain.pk, "testnet")
    assert not batch.rounds
    assert len(batch.dead) == 1 and "outside the plausible heights 1..200" in batch.dead[0].reason


@pytest.mark.django_db(transaction=True)
def test_a_poisoned_height_in_redis_is_healed_on_start(node, redis_client, caplog):
    redis_client.set(last_height_key("hostile"), str(INT64_MAX + 1))  # what the old code left behind

    async def script(ws):
        await ws.send(new_round(101))
        await ws.send(new_round(102))

    node.ws_script = script
    caplog.set_level(logging.WARNING, "ctop.subscriber")
    with running([target("hostile", node)], redis_client, options=HOSTILE) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.counters.events >= 2, message="the honest frames")
        assert worker.last_height == 102
        wait_until(lambda: decode_last_height(redis_client.get(last_height_key("hostile")))[0] == 102)
    assert any("beyond any plausible height" in r.getMessage() for r in caplog.records)
    # No gap reaching up to the poisoned value, and every later status write works.
    assert all(g["to"] <= 200 for g in entries_of_kind(redis_client, "hostile", KIND_GAP))
    store(redis_client, "hostile")
    assert ChainStatus.objects.get(chain__name="hostile").height == 102


def test_a_lying_status_does_not_make_the_honest_endpoint_look_lagging(sim, redis_client):
    (honest,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    liar = HostileNode(chain_id="sim-1").start()
    liar.status_height = lambda: INT64_MAX
    try:
        with running([target("sim-1", liar, honest)], redis_client) as runner:
            worker = runner.workers[0]
            wait_until(lambda: worker.connected_url == honest.url, message="the honest endpoint chosen")
            states = {s.url: s for s in worker.health.snapshot()}
            assert "nothing vouches for" in states[liar.url].implausible
            assert not states[honest.url].implausible
            assert liar.connections == 0
    finally:
        liar.stop()


def test_unicode_digits_in_a_height_are_not_a_crash():
    frame = new_round(101).replace('"height":"101"', '"height":"1²"', 1)
    assert p.peek_frame(frame).height is None  # not a height: the frame takes the checked path
    with pytest.raises(p.ProtocolError):
        p.decode_frame(frame)
    assert p.peek_frame(new_round(101).replace('"101"', f'"{INT64_MAX + 1}"', 1)).height is None


# --- 2. memory ---


@pytest.mark.django_db(transaction=True)
def test_an_oversized_frame_drops_the_connection_unread_and_records_a_gap(node, redis_client, caplog):
    state = {"n": 0}

    async def script(ws):
        state["n"] += 1
        if state["n"] == 1:
            await ws.send(new_round(101))
            await ws.flood(200 * 2**20)  # 200 MiB announced and sent as fast as ctop reads
        else:
            await ws.send(new_round(node.status_height() + 1))

    node.ws_script = script
    caplog.set_level(logging.ERROR, "ctop.subscriber")
    rss = psutil.Process().memory_info().rss
    with running([target("hostile", node)], redis_client, options=HOSTILE) as runner:
        worker = runner.workers[0]
        wait_until(lambda: node.connections >= 2 and worker.counters.events >= 2, message="the reconnection")
        grown = psutil.Process().memory_info().rss - rss
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB"
    assert any("message of 209715200 bytes" in r.getMessage() for r in caplog.records)
    gaps = entries_of_kind(redis_client, "hostile", KIND_GAP)
    assert any(g["from"] == 101 and "connection dropped" in g["reason"] for g in gaps)


def test_a_ping_flood_cannot_hold_a_read_forever(node, redis_client, caplog):
    async def script(ws):
        if node.connections == 1:
            await ws.send(new_round(101))
            await ws.pings(0.1, 30)  # pings forever: each read gets bytes, never a message

    node.ws_script = script
    caplog.set_level(logging.ERROR, "ctop.subscriber")
    with running([target("hostile", node)], redis_client, options=HOSTILE):
        wait_until(lambda: node.connections >= 2, timeout=6, message="dropped and reconnected")
    assert any("kept a read busy for 1s" in r.getMessage() for r in caplog.records)


def test_a_dripped_frame_is_cut_off_at_its_deadline(node, redis_client, caplog):
    async def script(ws):
        await ws.send(new_round(101))
        body = new_round(102).encode()
        await ws.drip(frame_header(len(body)) + body, 0.05)  # ~5 s for one small frame

    node.ws_script = script
    caplog.set_level(logging.ERROR, "ctop.subscriber")
    with running([target("hostile", node)], redis_client, options=HOSTILE):
        wait_until(lambda: node.connections >= 2, timeout=5, message="dropped and reconnected within ~1 s")
    assert any("took longer than 1s" in r.getMessage() for r in caplog.records)


def test_http_replies_are_bounded_in_size_and_in_total_time(node):
    node.routes["/big"] = ("200 OK", b"x" * (3 * 2**20))
    node.routes["/drip"] = ("200 OK", b"y" * 200)
    node.drip["/drip"] = 0.05  # 10 s for 200 bytes, every read within any per-read timeout
    with pytest.raises(http.HTTPError, match="refused"):
        http.get(node.url + "/big", max_bytes=2**20)
    started = time.monotonic()
    with pytest.raises(http.HTTPError, match="no complete reply within 1s") as err:
        http.get(node.url + "/drip", deadline=1.0)
    assert err.value.timeout and time.monotonic() - started < 2.0
    node.status_drip = 0.05  # the headers themselves dripped
    started = time.monotonic()
    with pytest.raises(http.HTTPError, match="no complete reply"):
        http.get(node.url + "/status", deadline=1.0)
    assert time.monotonic() - started < 2.0
    assert http.get(node.url + "/big", max_bytes=4 * 2**20).body == b"x" * (3 * 2**20)


@pytest.mark.django_db
def test_dead_letters_are_cut_to_their_bound_and_keep_the_original_length(chain, settings):
    settings.CTOP = {**settings.CTOP, "DEAD_LETTER_MAX_BYTES": 1024}
    huge = '{"jsonrpc":"2.0","result":{"data":' + "x" * (2 * 2**20)
    entry = StreamEntry(KIND_FRAMES, "testnet", time.time_ns(), encode_frames([huge.encode()]), window=(1, 200))
    batch = Batch()
    decode_into(batch, "s", b"1-0", entry.to_fields(), chain.pk, "testnet")
    (row,) = batch.dead
    assert len(row.payload) == 1024 and row.length == len(huge)


# --- a healthy chain beside a hostile one ---


@pytest.mark.django_db(transaction=True)
def test_one_chain_under_attack_never_slows_another(sim, node, redis_client):
    (honest,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()

    async def script(ws):
        body = new_round(101).encode()
        await ws.drip(frame_header(len(body)) + body, 0.2)

    node.ws_script = script
    node.status_drip = 0.2  # every /status dripped too
    with running([target("sim-1", honest), target("hostile", node)], redis_client, options=HOSTILE) as runner:
        healthy = runner.workers[0]
        first = wait_until(lambda: healthy.last_height, message="the healthy chain's first height")
        time.sleep(2.0)
        assert healthy.last_height >= first + 15  # ~20 heights in 2 s at 0.1 s blocks
        assert healthy.counters.reconnects == 0


def test_redis_record_codec_round_trips_and_refuses_garbage():
    assert decode_last_height(encode_last_height(123, 1_700_000_000.7)) == (123, 1_700_000_000.0)
    assert decode_last_height(b"123") == (123, None)  # written before times were kept
    for junk in (b"", b"abc", b"\xb2", b"12:x", b"-5", None):
        assert decode_last_height(junk) is None


@pytest.mark.django_db
def test_gap_and_status_entries_outside_the_window_change_nothing(chain, redis_client):
    key = stream_key("testnet")
    for kind, doc in (
        (KIND_GAP, b'{"from": 100, "to": 9223372036854775808, "reason": "x"}'),
        (KIND_GAP, b'{"from": 100, "to": 5000, "reason": "x"}'),
    ):
        redis_client.xadd(key, StreamEntry(kind, "testnet", time.time_ns(), doc, window=(90, 300)).to_fields())
    Endpoint.objects.filter(chain=chain).delete()
    StreamConsumer([chain], client=redis_client, consumer="t", block_ms=100).run(idle_exit=True, pipelined=False)
    assert not Gap.objects.exists()
    assert DeadLetter.objects.filter(chain=chain).count() == 2


# --- 3. one chain's slow endpoint or receiver never delays another chain ---


def absent_precommits(chain, height: int, address: str) -> None:
    """The chain's canonical commit of `height`, as the backfill stores it: `address` absent."""
    from consensus.models import CommitSignature
    from validators.models import Validator

    for index, validator in enumerate(Validator.objects.filter(chain=chain).order_by("address")):
        CommitSignature.objects.create(
            chain=chain,
            height=height,
            round=0,
            validator_index=index,
            flag=1 if validator.address == address else 2,
            validator=None if validator.address == address else validator,
        )


@pytest.mark.django_db(transaction=True)
def test_a_dripping_endpoint_and_receiver_never_delay_another_chains_alerts(node):
    from analysis.models import Alert, AlertKind, ChannelKind, NotificationChannel
    from analysis.notify import Notifier
    from analysis.runner import MissingVoteAnalyzer
    from validators.models import SetIndexState
    from validators.services import Member, apply_set

    from .analysishelpers import A, B, C, D, play
    from .receivers import Receiver

    node.status_drip = 0.2  # a /status of ~1.4 kB takes ~5 min; every read is within any per-read timeout
    slow = Chain.objects.create(name="slow", chain_id="hostile-1")
    Endpoint.objects.create(chain=slow, url=node.url)
    fast = Chain.objects.create(name="fast", chain_id="fast-1")
    for chain in (slow, fast):
        apply_set(chain.pk, 1, [Member(a, 10, i) for i, a in enumerate((A, B, C, D))])
        SetIndexState.objects.create(chain=chain, verified_height=100, verified_at=timezone_now())
    healthy, dripping = Receiver(), HostileNode().start()
    dripping.routes["/hook"] = ("200 OK", b"ok")
    dripping.drip["/hook"] = 1.0
    try:
        NotificationChannel.objects.create(name="healthy", kind=ChannelKind.WEBHOOK, target=healthy.url + "/hook")
        # A receiver that drips its reply gets every alert too: it delays only its own channel.
        NotificationChannel.objects.create(name="dripping", kind=ChannelKind.WEBHOOK, target=dripping.url + "/hook")
        for h in range(10, 14):
            # D misses its precommits on both chains. The slow chain needs the canonical commit to
            # be sure (a look-up at the dripping node); the fast one has it stored already.
            play(slow, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S"), D: ("S", "")}})
            play(fast, h, {0: {A: ("S", "S"), B: ("S", "S"), C: ("S", "S"), D: ("S", "")}})
            absent_precommits(fast, h, D)
        play(slow, 14, {0: {}})
        play(fast, 14, {0: {}})
        analyzer = MissingVoteAnalyzer([slow, fast])
        notifier = Notifier(interval=0.2).start()
        try:
            started = time.monotonic()
            analyzer.run_once()
            took = time.monotonic() - started
            assert took < 2.0, f"a tick took {took:.1f}s"
            assert Alert.objects.filter(chain=fast, kind=AlertKind.MISSED_VOTES, is_open=True).exists()
            assert not Alert.objects.filter(chain=slow, is_open=True).exists()  # waiting for the node
            wait_until(lambda: healthy.requests, timeout=5, message="the fast chain's notification")
            assert time.monotonic() - started < 5.0
            wait_until(lambda: dripping.requests, timeout=5, message="the dripping receiver asked too")
        finally:
            notifier.close(timeout=1)  # a delivery still dripping: the stop neither waits nor raises
            analyzer.close()
    finally:
        healthy.server.shutdown()
        dripping.stop()


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
        chain=chain, state="all_failing", reason=evil, updated_at=timezone_now(), since=timezone_now()
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

    def broken(channel, alert, event):
        calls.append(event)
        raise UnicodeError("a bug in a transport")

    NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target="http://127.0.0.1:9/x")
    Notification.objects.filter(channel__name="hook").delete()
    from analysis.lifecycle import raise_or_update
    from analysis.models import AlertKind, Severity

    raise_or_update(chain, AlertKind.STALLED, None, now=timezone_now(), severity=Severity.CRITICAL, summary="x")
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
        raise_or_update(chain, AlertKind.STALLED, None, now=timezone_now(), severity=Severity.CRITICAL, summary=summary)
        assert send_due() == 2
        bodies = dict(receiver.requests)
        slack = bodies["/slack"]["text"]
        assert "<" not in slack and ">" not in slack  # no <!channel>, <@U123> or link markup survives
        assert "&lt;!channel&gt;" in slack and "@\u200beveryone" in slack and "@\u200bhere" in slack
        discord = bodies["/discord"]
        assert discord["allowed_mentions"] == {"parse": []}  # Discord's own switch: nobody is pinged
    finally:
        receiver.close()


def timezone_now():
    from django.utils import timezone

    return timezone.now()


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
    SetIndexState.objects.create(chain=chain, verified_height=0, verified_at=timezone_now())
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


@pytest.mark.django_db
def test_a_height_of_many_rounds_or_a_forged_round_number_never_stops_the_analysis(net):
    from analysis.models import HeightVerdict, ValidatorVerdict
    from analysis.runner import MissingVoteAnalyzer

    from .analysishelpers import all_sign, play

    play(net, 10, all_sign())
    play(net, 11, {r: {} for r in range(40)} | {40: all_sign()[0]})  # a long halt: 41 rounds
    play(net, 12, {0: all_sign()[0], 32767: {}})  # a forged round number
    play(net, 13, all_sign())
    play(net, 14, {0: {}})
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()
    assert set(HeightVerdict.objects.values_list("height", "rounds")) == {(11, 41), (12, 32767), (13, 1)}
    v11 = ValidatorVerdict.objects.filter(height=11).first()
    assert len(v11.prevotes) == 32 and v11.prevotes.endswith("S")  # the last 32 rounds, the commit round last


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


def test_a_liar_a_little_ahead_does_not_make_the_preferred_endpoint_look_lagging(sim, redis_client):
    sim_chain = SimChain("sim-1", validators=4, block_time=0.2)
    (honest,) = sim.add_chain(sim_chain)
    sim.start()
    liar = HostileNode(chain_id="sim-1").start()
    liar.status_height = lambda: sim_chain.latest_height + 50  # within the plausible margin
    try:
        with running([target("sim-1", honest, liar)], redis_client) as runner:
            worker = runner.workers[0]
            wait_until(lambda: worker.connected_url == honest.url and worker.counters.events > 20)
            time.sleep(3.0)  # ten health rounds
            assert worker.connected_url == honest.url and worker.counters.failovers == 0
            states = {s.url: s for s in worker.health.snapshot()}
            assert states[honest.url].corroborated and not states[liar.url].corroborated
            assert liar.connections == 0
    finally:
        liar.stop()
