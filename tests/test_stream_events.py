"""stream_events on real Redis and PostgreSQL: at least once, idempotent, never stuck."""

from __future__ import annotations

import asyncio
import time
from unittest import mock

import psycopg
import pytest
import redis
from django.db import OperationalError, connection

from consensus import partitions
from consensus import protocol as p
from consensus.models import Chain, ChainStatus, CommitSignature, DeadLetter, Gap, Round, RoundStep, Vote
from consensus.protocol.stream import KIND_BLOCK, KIND_FRAMES, KIND_GAP, KIND_STATUS, encode_frames
from consensus.streams import GROUP, stream_key

from .procs import database_url
from .protocol_fixtures import ADDRESSES, frames, http
from .streamhelpers import NS, consumer, drain, entry, expected_votes, fill, snapshot


@pytest.fixture
def normal(chain, redis_client):
    lines = list(frames("ws_frames_normal.jsonl")) + list(frames("ws_frames_one_down.jsonl"))
    fill(redis_client, chain.name, lines)
    return lines


@pytest.mark.django_db(transaction=True)
def test_batches_persist_every_event(chain, redis_client, normal):
    c = consumer(chain, redis_client, block_ms=50)
    drain(c)
    votes = set(snapshot()["votes"])
    assert votes == expected_votes(normal)
    assert Vote.objects.count() == 78 + 72
    assert Vote.objects.filter(block_tag__isnull=True).count() == 12  # the nil votes of the outage
    r11 = Round.objects.get(chain=chain, height=11, round=0)
    assert r11.proposer.address == ADDRESSES[2] and r11.proposer_index == 2 and r11.block_hash
    assert RoundStep.objects.filter(height=26, round=0, step=p.STEP_NUMBERS["RoundStepPrecommit"]).exists()
    # every entry acknowledged
    assert redis_client.xpending(stream_key(chain.name), GROUP)["pending"] == 0


@pytest.mark.django_db(transaction=True)
def test_redelivery_and_a_second_consumer_change_nothing(chain, redis_client, normal):
    drain(consumer(chain, redis_client, "one", block_ms=50))
    first = snapshot()
    # Deliver everything again: a new group reads the stream from the start.
    redis_client.xgroup_destroy(stream_key(chain.name), GROUP)
    a = consumer(chain, redis_client, "a", count=2, block_ms=50)
    b = consumer(chain, redis_client, "b", count=2, block_ms=50)
    for _ in range(30):
        a.run_once()
        b.run_once()
    # Everything was read and stored again (the natural keys made it change nothing).
    assert a.stats.entries + b.stats.entries == redis_client.xlen(stream_key(chain.name))
    assert a.stats.entries > 0 and b.stats.entries > 0
    assert snapshot() == first


@pytest.mark.django_db(transaction=True)
def test_ingestion_continues_across_partition_boundaries_and_makes_the_next_ahead(chain, redis_client, normal):
    """Partitions of 5 heights: the recorded heights cross several boundaries; every vote lands."""
    Chain.objects.filter(pk=chain.pk).update(partition_heights=5)
    drain(consumer(chain, redis_client, block_ms=50))
    assert set(snapshot()["votes"]) == expected_votes(normal)
    heights = set(Vote.objects.values_list("height", flat=True))
    los = {part.lo for part in partitions.existing(chain.pk)}
    assert {h - h % 5 for h in heights} <= los and len(los) >= 4


@pytest.mark.django_db(transaction=True)
def test_two_consumers_give_the_same_rows_as_one(chain, redis_client, normal):
    a = consumer(chain, redis_client, "a", count=2, block_ms=50)
    b = consumer(chain, redis_client, "b", count=2, block_ms=50)
    for _ in range(40):
        a.run_once()
        b.run_once()
    assert a.stats.entries and b.stats.entries  # both did part of the work
    votes = set(snapshot()["votes"])
    assert votes == expected_votes(normal)


@pytest.mark.django_db(transaction=True)
def test_pending_entries_of_a_dead_consumer_are_reclaimed(chain, redis_client, normal):
    key = stream_key(chain.name)
    consumer(chain, redis_client, "x")
    # A consumer reads everything and dies before acknowledging (a kill -9 mid-batch).
    redis_client.xreadgroup(GROUP, "dead", {key: ">"}, count=1000)
    assert redis_client.xpending(key, GROUP)["pending"] > 0
    survivor = consumer(chain, redis_client, "survivor", claim_idle_ms=200, block_ms=50)
    time.sleep(0.3)
    drain(survivor)
    assert survivor.stats.claimed > 0
    assert redis_client.xpending(key, GROUP)["pending"] == 0
    assert Vote.objects.count() == len(expected_votes(normal))


@pytest.mark.django_db(transaction=True)
def test_poison_entries_are_dead_lettered_and_the_rest_land(chain, redis_client):
    key = stream_key(chain.name)
    good = [f.encode() for f in frames("ws_frames_normal.jsonl")[:40]]
    redis_client.xadd(
        key, entry(KIND_FRAMES, encode_frames([*good[:20], b'{"jsonrpc":"2.0","id":2,"result":{"da', *good[20:]]))
    )
    redis_client.xadd(key, {b"k": b"nonsense", b"c": b"testnet", b"t": b"1", b"p": b"x"})
    redis_client.xadd(key, entry(KIND_GAP, b"{not json"))
    redis_client.xadd(key, entry(KIND_FRAMES, b"12:too short"))
    c = consumer(chain, redis_client, block_ms=50)
    drain(c)
    letters = list(DeadLetter.objects.order_by("id"))
    assert len(letters) == 4
    reasons = " | ".join(d.reason for d in letters)
    assert "not JSON" in reasons and "kind" in reasons and "undecodable gap entry" in reasons
    assert "truncated frame" in reasons
    assert letters[0].frame_index == 20  # the bad frame alone, not its whole burst
    expected = sum(isinstance(p.decode_frame(f), p.Vote) for f in good)
    assert Vote.objects.count() == expected
    assert redis_client.xpending(key, GROUP)["pending"] == 0  # acknowledged: never retried in a loop
    drain(c)
    assert DeadLetter.objects.count() == 4


@pytest.mark.django_db(transaction=True)
def test_gaps_blocks_and_status_entries(chain, redis_client):
    key = stream_key(chain.name)
    redis_client.xadd(key, entry(KIND_STATUS, b'{"state":"connected","endpoint":"http://n1","height":30}'))
    redis_client.xadd(key, entry(KIND_GAP, b'{"from":31,"to":31,"reason":"not listening"}'))
    redis_client.xadd(key, entry(KIND_BLOCK, http("http_block_one_down.json").encode()))
    redis_client.xadd(key, entry(KIND_GAP, b'{"from":31,"to":31,"reason":"not listening","backfilled":true}'))
    redis_client.xadd(key, entry(KIND_STATUS, b'{"state":"all_failing","endpoint":"","reason":"refused"}', t=NS + 5))
    drain(consumer(chain, redis_client, block_ms=50))
    gap = Gap.objects.get(chain=chain)
    assert (gap.from_height, gap.to_height, gap.reason) == (31, 31, "not listening") and gap.backfilled_at
    sigs = {s.validator_index: s for s in CommitSignature.objects.filter(chain=chain, height=31)}
    assert [sigs[i].flag for i in range(4)] == [2, 1, 2, 2]
    assert sigs[0].validator.address == ADDRESSES[0] and sigs[1].validator is None
    status = ChainStatus.objects.get(chain=chain)
    assert (status.state, status.reason) == ("all_failing", "refused")


@pytest.mark.django_db(transaction=True)
def test_a_stream_lost_with_its_group_is_made_again_and_nothing_written_since_is_skipped(chain, redis_client):
    # Redis here keeps nothing on disk: restarted, it comes back without the streams and groups.
    lines = list(frames("ws_frames_normal.jsonl"))
    half = len(lines) // 2
    fill(redis_client, chain.name, lines[:half])
    c = consumer(chain, redis_client, block_ms=50)
    drain(c)
    redis_client.delete(stream_key(chain.name))  # what a restart of an empty Redis leaves
    fill(redis_client, chain.name, lines[half:])  # the subscriber goes on writing (XADD makes the key)
    drain(c)
    assert set(snapshot()["votes"]) == expected_votes(lines)
    assert redis_client.xpending(stream_key(chain.name), GROUP)["pending"] == 0
    # A group that cannot be made again (Redis out of memory, a read-only replica) is not "mended":
    # the error goes to the caller (run() waits a second and retries), no hot loop.
    redis_client.delete(stream_key(chain.name))
    oom = redis.ResponseError("OOM command not allowed")
    with mock.patch.object(c, "ensure_groups", side_effect=oom), pytest.raises(redis.ResponseError, match="NOGROUP"):
        c.run_once()


@pytest.mark.django_db(transaction=True)
def test_postgresql_going_away_loses_nothing(chain, redis_client, normal):
    key = stream_key(chain.name)
    c = consumer(chain, redis_client, count=3, block_ms=50)
    c.run_once()
    # A real fault: the server terminates our connection between batches.
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    with psycopg.connect(database_url("postgres"), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert c.run_once() == 0  # failed: nothing acknowledged
    assert c.stats.db_errors == 1
    pending_during = redis_client.xpending(key, GROUP)["pending"]
    assert pending_during > 0
    # And an outage of several batches (fault injection), then back.
    with mock.patch("consensus.ingest.consumer.persist", side_effect=OperationalError("server closed the connection")):
        for _ in range(3):
            assert c.run_once() == 0
    drain(c)
    assert redis_client.xpending(key, GROUP)["pending"] == 0
    votes = set(snapshot()["votes"])
    assert votes == expected_votes(normal)


@pytest.mark.django_db(transaction=True)
def test_live_updates_are_published_after_commit(chain, redis_client, normal):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from consensus.ingest import LivePublisher, group_name

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group_name(chain.name), channel)
    committed_when_published: list[bool] = []

    class Watching(LivePublisher):
        """Records, as each update is published, whether its round is visible to another
        connection, i.e. committed."""

        def publish(self, chain_name, height, round_):
            with psycopg.connect(database_url(), autocommit=True) as other:
                row = other.execute(
                    "SELECT 1 FROM consensus_round WHERE chain_id = %s AND height = %s AND round = %s",
                    [chain.pk, height, round_],
                ).fetchone()
            committed_when_published.append(row is not None)
            super().publish(chain_name, height, round_)

    publisher = Watching()
    publisher.start()

    async def receive():
        return await asyncio.wait_for(layer.receive(channel), timeout=5)

    try:
        drain(consumer(chain, redis_client, publisher=publisher, block_ms=50))
        message = async_to_sync(receive)()
    finally:
        publisher.stop()
    assert message["type"] == "consensus.update" and message["chain"] == chain.name
    assert message["height"] >= 11
    assert committed_when_published and all(committed_when_published)  # published only after commit
    assert Chain.objects.count() == 1
