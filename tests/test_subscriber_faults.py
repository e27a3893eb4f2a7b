"""subscribe_events when Redis goes away, on SIGTERM, and with bad command lines."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

from consensus import protocol as p
from consensus.protocol.stream import KIND_COMMIT, KIND_GAP
from consensus.simulator import Halt, Scenario, SimChain

from .conftest import ROOT
from .procs import command_env
from .redisproc import RedisProcess
from .simhelpers import wait_for_height
from .subscriberhelpers import entries, entries_of_kind, frames, running, target, wait_until


@pytest.fixture
def private_redis(tmp_path):
    r = RedisProcess(tmp_path)
    r.start()
    yield r
    r.kill()


def test_redis_frozen_then_back_loses_nothing(sim, private_redis):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.05))
    node.record = True
    sim.start()
    client = private_redis.client()
    with running([target("sim-1", node)], client) as runner:
        wait_until(lambda: runner.writer.stats.delivered > 100)
        private_redis.freeze()  # Redis stops answering: writes time out (after redis-py's own retries)
        # Noticed within a couple of socket timeouts (the client's own retries are kept short).
        wait_until(lambda: not runner.writer.redis_ok, timeout=5, message="the writer notices")
        # Meanwhile events keep arriving and are held in memory, not dropped.
        wait_until(lambda: runner.writer.buffered > 50, timeout=10, message="events held in memory")
        private_redis.thaw()
        wait_until(lambda: runner.writer.redis_ok and runner.writer.buffered < 20, message="buffer drained")
        time.sleep(0.5)
    sent = [f for conn in node.recorded for f in conn.sent_frames if '"result":{}' not in f]
    stored = frames(client, "sim-1")
    # At-least-once: a batch Redis applied just as its reply timed out is sent again, so a frame
    # may be stored twice (the natural keys in PostgreSQL make that harmless). None is lost, and
    # first occurrences keep the order they were received in.
    unique = list(dict.fromkeys(stored))
    assert unique == sent[: len(unique)]
    assert len(sent) - len(unique) < 50  # only what arrived after the runner stopped reading
    assert runner.report.undelivered == 0


def test_redis_restarted_buffered_entries_are_delivered(sim, private_redis):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.05))
    node.record = True
    sim.start()
    client = private_redis.client()
    with running([target("sim-1", node)], client) as runner:
        wait_until(lambda: runner.writer.stats.delivered > 50)
        private_redis.kill()  # connection refused from now on; a restarted Redis starts empty
        delivered_before = runner.writer.stats.delivered  # these went down with the old Redis
        time.sleep(1.5)
        private_redis.start()
        wait_until(lambda: runner.writer.redis_ok and runner.writer.buffered < 5, message="buffer drained")
        time.sleep(0.3)
    sent = [f for conn in node.recorded for f in conn.sent_frames if '"result":{}' not in f]
    stored = set(frames(client, "sim-1"))
    # Everything not yet accepted when Redis went away was held and delivered to the new one.
    tail = sent[delivered_before : delivered_before + 300]
    assert len(tail) == 300
    missing = [f for f in tail if f not in stored]
    assert missing == []


def run_command(*args: str, timeout: float = 60, env_extra: dict | None = None, **popen) -> subprocess.CompletedProcess:
    env = command_env(**(env_extra or {}))
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **popen,
    )


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ("osmosis", "needs name,url pairs but got 1 items"),
        ("osmosis,tcp://h:1,juno", "needs name,url pairs but got 3 items"),
        (",tcp://h:1", "empty network name"),
        ("osmosis,not-a-url", "is not a URL"),
        ("osmosis,ftp://h:1", "unsupported scheme 'ftp'"),
        ("osmosis,tcp://h:99999", "is not a valid URL"),
        ("osmo sis,tcp://h:1", "bad network name"),
    ],
)
def test_bad_networks_exit_2_before_anything_starts(networks, message):
    # Checked before anything connects: not even the (here unreachable) database is touched.
    proc = run_command(
        "subscribe_events",
        "--networks",
        networks,
        timeout=30,
        env_extra={"DATABASE_URL": "postgres://postgres@127.0.0.1:9/nowhere"},
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.django_db(transaction=True)
def test_sigterm_flushes_and_exits_0(sim, redis_client, settings):

    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    env = command_env()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "subscribe_events", "--networks", f"sim-1,{node.url}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: redis_client.xlen(settings.CTOP["STREAM_PREFIX"] + "sim-1") > 30, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 8
    assert "delivered" in out
    from consensus.models import Chain

    assert Chain.objects.get(name="sim-1").chain_id == "sim-1"  # learned from the endpoint


@pytest.mark.parametrize(
    "command",
    [
        ["subscribe_events", "--networks", "osmosis,tcp://127.0.0.1:1"],
        ["stream_events"],
        ["index_validators"],
        ["analyze", "missing-votes"],
    ],
)
def test_a_long_running_command_waits_for_postgresql_with_one_clear_line(command):
    """PostgreSQL may come up after ctop (systemd starts every unit at once): waiting is right, an
    exit would leave the deployment without that process. SIGTERM still stops it at once."""
    env = command_env(DATABASE_URL="postgres://postgres:hunter2@127.0.0.1:9/nowhere")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("waiting for it" in line for line in lines), timeout=20, message="the waiting line")
        assert proc.poll() is None  # still there, waiting
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    reader.join(5)
    assert proc.returncode == 0
    text = "".join(lines)
    assert "is not reachable" in text and "127.0.0.1:9" in text
    assert "Traceback" not in text and "hunter2" not in text


def test_a_full_buffer_while_redis_is_frozen_stops_reading_and_the_gap_is_backfilled(sim, private_redis, monkeypatch):
    import socket

    from consensus.subscriber import worker as worker_module
    from consensus.subscriber.wsclient import BoundedWebSocket

    class SmallReceiveBuffer(BoundedWebSocket):
        """Fault injection: a tiny socket receive buffer, so that a reader that stops reading is
        felt by the node within a second (the kernel would otherwise absorb megabytes)."""

        def __init__(self, **kw):
            super().__init__(sockopt=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)], **kw)

    monkeypatch.setattr(worker_module, "BoundedWebSocket", SmallReceiveBuffer)
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.05))
    # A node gives up on a reader that stopped (CometBFT's buffer is 200 frames); 1,000 here (about
    # 3 s of this chain's frames), so that a reader merely starved of CPU by a busy machine is not
    # given up on before its buffer fills (seen once in a full CI run).
    node.queue_limit = 1000
    node.send_buffer = 4096
    sim.start()
    client = private_redis.client()
    with running([target("sim-1", node)], client, buffer_bytes=20_000) as runner:
        worker = runner.workers[0]
        wait_until(lambda: runner.writer.stats.delivered > 100, message="delivering")
        private_redis.freeze()
        # The buffer fills, the worker stops reading, the node cancels the slow reader's feed.
        wait_until(lambda: runner.writer.buffered and runner.writer._bytes > 15_000, message="the buffer full")
        events = worker.counters.events
        # The node holds 1,000 frames for a reader, then gives up on it: that happens only if the
        # worker stopped reading.
        wait_until(lambda: node.slow_readers_cancelled, timeout=30, message="the node cancelling the slow reader")
        assert worker.counters.events - events < 50  # stopped reading (a frame or two in flight)
        stopped_at = worker.last_height
        private_redis.thaw()
        gap = wait_until(
            lambda: next(
                (g for g in entries_of_kind(client, "sim-1", KIND_GAP) if g.get("backfilled") and g["to"] > stopped_at),
                None,
            ),
            timeout=30,
            message="the gap of the heights the node dropped, backfilled",
        )
    assert worker.counters.errors.get("subscription_cancelled") or worker.counters.reconnects
    commits = {p.decode_commit(e.payload).height for e in entries(client, "sim-1") if e.kind == KIND_COMMIT}
    assert set(range(max(gap["from"], gap["backfilled_from"]), gap["to"] + 1)) <= commits


def test_a_halt_seen_through_two_endpoints_is_no_reason_to_reconnect_or_fail_over(sim, redis_client):
    scenario = Scenario(halts=[Halt(height=15, seconds=6.0, offline=(2, 3))])
    nodes = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1, scenario=scenario), nodes=2)
    sim.start()
    with running([target("sim-1", *nodes)], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.last_height and worker.last_height >= 15, message="the halt begins")
        wait_until(lambda: worker.last_height >= 18, timeout=20, message="the chain resumes")
        # A silent feed during a halt (longer than the 2 s silence timeout) is expected: all the
        # endpoints age together; nobody is stale or lagging.
        assert (worker.counters.reconnects, worker.counters.failovers) == (0, 0)
        assert worker.connected_url == nodes[0].url


@pytest.mark.django_db(transaction=True)
def test_kill_9_of_the_subscriber_then_a_restart_records_and_backfills_the_gap(sim, redis_client):
    from consensus.streams import decode_last_height, last_height_key

    from .procs import Command

    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    args = ("subscribe_events", "--networks", f"sim-1,{node.url}", "--health-interval", "1s")

    def seen() -> int:
        record = decode_last_height(redis_client.get(last_height_key("sim-1")))
        return record[0] if record else 0

    first = Command(*args)
    try:
        wait_until(lambda: seen() >= 10, timeout=30, message="heights delivered")
    finally:
        first.proc.kill()  # kill -9, mid-burst
        first.wait(10)
    killed_at = seen()
    wait_for_height(node.url, killed_at + 15)  # heights pass while nobody listens
    second = Command(*args)
    try:
        gap = wait_until(
            lambda: next(
                (
                    g
                    for g in entries_of_kind(redis_client, "sim-1", KIND_GAP)
                    if g.get("backfilled") and g["from"] == killed_at and "not listening" in g["reason"]
                ),
                None,
            ),
            timeout=30,
            message="the gap since the kill, backfilled",
        )
    finally:
        stopped = second.stop()
    assert stopped == 0
    assert gap["to"] >= killed_at + 10
    commits = {p.decode_commit(e.payload).height for e in entries(redis_client, "sim-1") if e.kind == KIND_COMMIT}
    assert set(range(gap["from"], gap["to"] + 1)) <= commits
