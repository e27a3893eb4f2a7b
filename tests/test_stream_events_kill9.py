"""The whole hand-off under kill -9: the simulator and subscribe_events run while stream_events is
killed with SIGKILL again and again; PostgreSQL ends up with exactly what the simulator emitted."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import redis

from consensus import protocol as p
from consensus.models import Chain, Endpoint, Vote
from consensus.protocol.stream import decode_entry, entry_frames
from consensus.simulator import Scenario, SimChain, SimulatorThread, Window
from consensus.streams import stream_key

from .conftest import ROOT
from .procs import command_env
from .subscriberhelpers import running, target, wait_until

KEY = stream_key("sim-1")


def held_by(client, consumer: str) -> list[bytes]:
    """Ids of the entries `consumer` has read and not acknowledged (none before the group exists)."""
    try:
        return [e["message_id"] for e in client.xpending_range(KEY, "ctop", "-", "+", 100, consumername=consumer)]
    except redis.ResponseError:
        return []


def votes_in(client, first: bytes | str = "-", last: bytes | str = "+") -> set:
    """(height, round, type, validator) of every vote in the stream's entries first..last."""
    out = set()
    for _, fields in client.xrange(KEY, first, last):
        for frame in entry_frames(decode_entry(fields)):
            value = p.decode_frame(frame)
            if isinstance(value, p.Vote):
                out.add((value.height, value.round, value.type, value.validator_address))
    return out


def start_stream_events(env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "stream_events",
            "--networks",
            "sim-1",
            "--claim-idle",
            "1s",
            "--batch",
            "5",
            "--no-live",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_9_of_stream_events_loses_nothing_and_duplicates_nothing(redis_client):
    chain = Chain.objects.create(name="sim-1", chain_id="sim-1")
    sim = SimulatorThread()
    sc = Scenario(
        offline=[Window(validator=1, start=8, end=12)], late_precommits=[Window(validator=2, start=1, end=10**6)]
    )
    (node,) = sim.add_chain(SimChain("sim-1", validators=6, block_time=0.05, scenario=sc))
    node.record = True
    sim.start()
    Endpoint.objects.create(chain=chain, url=node.url)
    env = command_env(LOG_LEVEL="WARNING")
    kills = 0
    held_at_kill: list[bytes] = []  # ids of the entries each killed consumer held
    try:
        with running([target("sim-1", node)], redis_client):
            # Eight kills, each while the consumer holds entries (however long this machine takes).
            deadline = time.monotonic() + 120
            while kills < 8:
                assert time.monotonic() < deadline, f"only {kills} kills in 120 s"
                proc = start_stream_events(env)
                try:
                    # Killed while it holds entries (read, not yet acknowledged): the case that matters.
                    name = f"{socket.gethostname()}-{proc.pid}"
                    held = wait_until(
                        lambda n=name: held_by(redis_client, n),
                        timeout=20,
                        interval=0.01,
                        message="the consumer holding entries",
                    )
                    held_at_kill.extend(held)
                finally:
                    proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                kills += 1
            # Stop the chain while the subscriber still reads, and wait until Redis holds every
            # vote sent.
            sim.stop()
            sent = [f for conn in node.recorded for f in conn.sent_frames]
            emitted = set()
            for frame in sent:
                value = p.decode_frame(frame)
                if isinstance(value, p.Vote):
                    emitted.add((value.height, value.round, value.type, value.validator_address))
            wait_until(
                lambda: emitted <= votes_in(redis_client), timeout=30, interval=0.3, message="every vote in Redis"
            )
    finally:
        if sim.loop.is_running():
            sim.stop()
    # One clean run drains what is left, as an operator would after the last crash: --until-idle
    # returns only once nothing is unread and nothing pending (entries a killed consumer held are
    # claimed once they have been idle for --claim-idle, and stored).
    # A small batch: what the killed consumers held takes several claims, each of which must be waited for.
    drain = ["stream_events", "--networks", "sim-1", "--claim-idle", "1s", "--until-idle", "--no-live", "--batch", "3"]
    final = subprocess.run(
        [sys.executable, "manage.py", *drain],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    (group,) = redis_client.xinfo_groups(KEY)
    assert (group["pending"], group["lag"]) == (0, 0)
    stored = list(Vote.objects.filter(chain=chain).values_list("height", "round", "type", "validator__address"))
    assert len(emitted) > 1000
    missing = emitted - set(stored)
    outside = set(stored) - emitted  # rows nobody sent: a decoding or redelivery bug
    assert (len(missing), len(outside)) == (0, 0)
    # What the killed consumers held was delivered again and stored: none of it is pending, and
    # every vote in those entries is a row.
    assert held_at_kill
    assert not set(held_at_kill) & {e["message_id"] for e in redis_client.xpending_range(KEY, "ctop", "-", "+", 10_000)}
    held_votes = set().union(*(votes_in(redis_client, i, i) for i in held_at_kill))
    assert held_votes and held_votes <= set(stored)
