"""stream_events throughput: a pre-filled stream of vote events into PostgreSQL with the real
indexes and constraints, against (a) the original's way, one INSERT per event in autocommit, and
(b) the ceiling, a raw COPY of the same rows into the same table. Then the end-to-end latency at a
steady 5,000 events/s: vote received by subscribe_events -> row committed by stream_events.

    .venv/bin/python -m benchmarks.bench_stream [--votes 1000000] [--validators 100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta

from benchmarks._setup import ROOT, setup_django


def make_frames(n_votes: int, validators: int) -> tuple[list[bytes], list[str]]:
    from consensus import protocol as p
    from consensus.protocol import encode

    addresses = [os.urandom(20).hex().upper() for _ in range(validators)]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    frames = []
    height = 0
    while len(frames) < n_votes:
        height += 1
        block = os.urandom(32)
        for vote_type in (p.PREVOTE, p.PRECOMMIT):
            for i, address in enumerate(addresses):
                v = p.Vote(
                    height,
                    0,
                    vote_type,
                    block,
                    t0 + timedelta(seconds=height, microseconds=i),
                    address,
                    i,
                    os.urandom(64),
                )
                frames.append(encode.vote_frame(v, 2).encode())
    return frames[:n_votes], addresses


def fill(client, key: str, chain: str, frames: list[bytes], burst: int = 256) -> None:
    from consensus.protocol.stream import KIND_FRAMES, StreamEntry, encode_frames

    pipe = client.pipeline(transaction=False)
    for i in range(0, len(frames), burst):
        entry = StreamEntry(KIND_FRAMES, chain, time.time_ns(), encode_frames(frames[i : i + burst]), "bench")
        pipe.xadd(key, entry.to_fields())
        if i % (burst * 200) == 0:
            pipe.execute()
    pipe.execute()


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("TRUNCATE consensus_vote, consensus_round, consensus_roundstep, consensus_deadletter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--validators", type=int, default=100)
    parser.add_argument("--naive", type=int, default=20_000, help="Votes for the one-INSERT-per-event baseline.")
    parser.add_argument("--latency-seconds", type=float, default=20)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from consensus import protocol as p
    from consensus.ingest import StreamConsumer
    from consensus.models import Chain, Validator, Vote, block_tag
    from consensus.streams import GROUP, connect, stream_key

    client = connect()
    client.flushdb()
    chain, _ = Chain.objects.get_or_create(name="bench-stream", defaults={"chain_id": "bench-1"})
    key = stream_key(chain.name)
    truncate()
    print(f"generating {args.votes:,} vote frames ({args.validators} validators)...", flush=True)
    frames, _ = make_frames(args.votes, args.validators)
    fill(client, key, chain.name, frames)
    print(f"stream filled: {client.xlen(key):,} entries of up to 256 frames", flush=True)

    # --- ctop: one pipelined process, then `stream_events --workers 2` (two processes, one group) ---
    consumer = StreamConsumer([chain], client=client, consumer="bench", block_ms=10)
    consumer.ensure_groups()
    started = time.perf_counter()
    consumer.run(log_interval=3600, idle_exit=True)  # pipelined, as the command runs it
    ours = Vote.objects.filter(chain=chain).count() / (time.perf_counter() - started)
    stored = Vote.objects.filter(chain=chain).count()
    assert stored == args.votes, f"stored {stored} of {args.votes}"
    truncate()
    client.xgroup_destroy(key, GROUP)
    two = command_with_workers(chain.name, 2, args.votes)
    assert Vote.objects.filter(chain=chain).count() == args.votes

    # --- (a) the original's way: decode each event and INSERT it on its own, autocommit ---
    truncate()
    ids = dict(Validator.objects.filter(chain=chain).values_list("address", "id"))
    sample = frames[: args.naive]
    started = time.perf_counter()
    with connection.cursor() as cur:
        for raw in sample:
            v = p.decode_frame(raw)
            cur.execute(
                "INSERT INTO consensus_vote (chain_id, height, round, type, validator_id, block_tag, received_at, skew)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                [
                    chain.pk,
                    v.height,
                    v.round,
                    v.type,
                    ids[v.validator_address],
                    block_tag(v.block_hash),
                    v.timestamp,
                    0,
                ],
            )
    naive = len(sample) / (time.perf_counter() - started)

    # --- (b) the ceiling: raw COPY of the same (already decoded) rows into the same table ---
    truncate()
    rows = []
    for raw in frames:
        v = p.decode_frame(raw)
        vid = ids[v.validator_address]
        rows.append((chain.pk, v.height, v.round, v.type, vid, block_tag(v.block_hash), v.timestamp, 0))
    started = time.perf_counter()
    with (
        connection.cursor() as cur,
        cur.copy(
            "COPY consensus_vote (chain_id, height, round, type, validator_id, block_tag, received_at, skew) FROM STDIN"
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)
    ceiling = len(rows) / (time.perf_counter() - started)
    truncate()
    client.delete(key)

    # --- end-to-end latency at a steady 5,000 events/s ---
    p50, p99, measured = latency(chain, client, args.latency_seconds)
    print()
    print(f"stream_events: {args.votes:,} votes from Redis into PostgreSQL (natural-key unique index, ON CONFLICT)")
    print(f"  ctop, one process (decode + binary COPY)      {ours:>10,.0f} votes/s")
    print(f"  ctop, stream_events --workers 2                {two:>10,.0f} votes/s  (sustained, start-up excluded)")
    print(f"  (a) one INSERT per event, autocommit           {naive:>10,.0f} votes/s  -> ctop is {ours / naive:.1f}x")
    print(
        f"  (b) raw COPY of decoded rows (ceiling)         {ceiling:>10,.0f} votes/s  -> ctop is "
        f"{ours / ceiling:.0%} of it"
    )
    print(
        f"  end-to-end latency at ~5,000 events/s ({measured:,} votes): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"
    )


def command_with_workers(chain: str, n: int, votes: int) -> float:
    """`manage.py stream_events --workers n --until-idle`: sustained votes/s from the moment the
    first worker is streaming (its log line) until every row is committed."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    env = {**os.environ, "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db['NAME']}", "LOG_LEVEL": "INFO"}
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "stream_events",
            "--networks",
            chain,
            "--until-idle",
            "--no-live",
            "--workers",
            str(n),
            "--consumer",
            "bench",
            "--log-interval",
            "1h",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    # The end: when every row is committed (the workers then idle out after their read timeout).
    from django.db import connection

    ended = None
    while proc.poll() is None:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM consensus_vote")
            if ended is None and cur.fetchone()[0] >= votes:
                ended = time.time()
        time.sleep(0.25)
    ended = ended or time.time()
    starts = []
    log.seek(0)
    for line in log:
        if " streaming " in line:
            stamp, millis = line[:23].split(",")
            starts.append(time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000)
    log.close()
    return votes / (ended - min(starts))


def latency(chain_obj, client, seconds: float) -> tuple[float, float, int]:
    """Simulator (4 validators... sized to ~5,000 events/s) -> subscriber -> consumer, all in this process."""
    from consensus.ingest import StreamConsumer
    from consensus.models import Chain, Endpoint
    from consensus.simulator import SimChain, SimulatorThread
    from consensus.subscriber import ChainTarget, Options, SubscribeRunner

    validators = 50
    block_time = (2 * validators + 8) / 5000  # ~5,000 events/s
    sim = SimulatorThread()
    (node,) = sim.add_chain(SimChain("lat-1", validators=validators, block_time=block_time))
    sim.start()
    chain, _ = Chain.objects.get_or_create(name="bench-latency", defaults={"chain_id": "lat-1"})
    Endpoint.objects.get_or_create(chain=chain, url=node.url)
    samples: list[float] = []

    class Timed(StreamConsumer):
        def after_commit(self, work, seconds):
            now = datetime.now(UTC)
            samples.extend((now - v.received_at).total_seconds() for v in work.batch.votes)
            super().after_commit(work, seconds)

    consumer = Timed([chain], client=client, consumer="lat", block_ms=5)
    consumer.ensure_groups()
    runner = SubscribeRunner(
        [ChainTarget("bench-latency", "", [(node.url, 0)])],
        client=client,
        # ~46 heights a second here (real chains make at most a few): widen the plausible window
        # so the load is measured, not refused.
        options=Options(health_interval=1.0, plausible_heights=1_000_000),
        log_interval=3600,
    )
    runner.start()
    stop = threading.Event()
    thread = threading.Thread(target=lambda: [consumer.run_once() for _ in iter(stop.is_set, True)], daemon=True)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(5)
    runner.shutdown()
    sim.stop()
    samples.sort()
    if not samples:
        return 0.0, 0.0, 0
    return statistics.median(samples), samples[int(len(samples) * 0.99)], len(samples)


if __name__ == "__main__":
    main()
