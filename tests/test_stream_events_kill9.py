"""The whole hand-off under kill -9: the simulator and subscribe_events run while stream_events is
killed with SIGKILL again and again; PostgreSQL ends up with exactly what the simulator emitted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connection

from consensus import protocol as p
from consensus.models import Chain, Endpoint, Vote
from consensus.simulator import Scenario, SimChain, SimulatorThread, Window

from .conftest import ROOT
from .subscriberhelpers import running, target


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
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ctop_project.settings_test",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{connection.settings_dict['NAME']}",
    }
    kills = 0
    held_at_kill: list[int] = []  # entries pending in the group just before each kill
    try:
        with running([target("sim-1", node)], redis_client):
            deadline = time.monotonic() + 12
            while time.monotonic() < deadline:
                proc = start_stream_events(env)
                time.sleep(0.6 + (kills % 3) * 0.4)
                held_at_kill.append(redis_client.xpending("ctop:events:sim-1", "ctop")["pending"])
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)
                kills += 1
            # Stop the chain while the subscriber still reads: every frame sent is then received.
            sim.stop()
            time.sleep(1.0)
        sent = [f for conn in node.recorded for f in conn.sent_frames]
    finally:
        if sim.loop.is_running():
            sim.stop()
    # One clean run drains what is left, as an operator would after the last crash: --until-idle
    # returns only once nothing is unread and nothing pending (entries a killed consumer held are
    # claimed once they have been idle for --claim-idle, and stored).
    drain = ["stream_events", "--networks", "sim-1", "--claim-idle", "1s", "--until-idle", "--no-live"]
    final = subprocess.run(
        [sys.executable, "manage.py", *drain],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr
    (group,) = redis_client.xinfo_groups("ctop:events:sim-1")
    assert (group["pending"], group["lag"]) == (0, 0)
    assert any(held_at_kill), "no kill landed while the consumer held entries"
    emitted = set()
    for frame in sent:
        value = p.decode_frame(frame)
        if isinstance(value, p.Vote):
            emitted.add((value.height, value.round, value.type, value.validator_address))
    stored = list(Vote.objects.filter(chain=chain).values_list("height", "round", "type", "validator__address"))
    assert kills >= 8
    assert len(emitted) > 1000
    assert set(stored) == emitted  # zero missing
    assert len(stored) == len(set(stored))  # zero duplicated
