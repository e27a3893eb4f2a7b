"""Trust boundaries: what a hostile or broken endpoint can do to ctop, and why it cannot.

Each test plays one attack from a fake node (tests.hostile) or feeds the code's own decoders, and
checks both sides: the attack is refused (dead-lettered or logged with a reason) and nothing else
is hurt (the latest height, memory, the other chain).
"""

from __future__ import annotations

import asyncio
import logging
import time

import psutil
import pytest
from django.utils import timezone

from common import http
from consensus import protocol as p
from consensus.ingest import StreamConsumer
from consensus.ingest.decode import Batch, decode_into
from consensus.models import Chain, ChainStatus, DeadLetter, Endpoint, Gap, Round
from consensus.protocol.stream import KIND_FRAMES, KIND_GAP, StreamEntry, encode_frames
from consensus.simulator import SimChain
from consensus.streams import decode_last_height, encode_last_height, last_height_key, stream_key

from .hostile import HOSTILE, HostileNode, frame_header, new_round, store, vote
from .subscriberhelpers import entries_of_kind, running, target, wait_until

INT64_MAX = 2**63 - 1


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
    from consensus.models import CommitSignature, Validator

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
        SetIndexState.objects.create(chain=chain, verified_height=100, verified_at=timezone.now())
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


@pytest.mark.django_db(transaction=True)
def test_made_up_event_types_are_counted_as_other_never_as_a_metric_label(node, redis_client):
    async def script(ws):
        h = node.status_height() + 1
        await ws.send(new_round(h))
        for i in range(50):  # fifty made-up types, one a kilobyte long
            name = "X" * 1000 if i == 0 else f"Made{i}Up"
            await ws.send(new_round(h).replace('tendermint/event/NewRound"', f'tendermint/event/{name}"', 1))
        await asyncio.sleep(30)  # connected until the test is done

    node.ws_script = script
    with running([target("hostile", node)], redis_client, options=HOSTILE) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.counters.events >= 51, message="the frames")
        families = {f.name: f for f in runner.metrics()}
    labels = {s.labels["type"]: s.value for s in families["ctop_subscriber_events"].samples}
    assert labels == {"NewRound": 1, "other": 50}
