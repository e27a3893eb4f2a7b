"""Any start order: the four long-running commands started together (as systemd does), or the
consumers before the subscriber has registered the chain, all end up recording and judging it."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading

import pytest

from analysis.models import HeightVerdict
from consensus.models import Vote
from consensus.simulator import SimChain, SimulatorThread

from .conftest import ROOT
from .procs import command_env
from .subscriberhelpers import wait_until

pytestmark = pytest.mark.slow


def start(args: list[str], env: dict, log: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True).start()
    return proc


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("order", "named"),
    [("consumers first", True), ("all at once", False)],
    ids=["consumers-first-named", "all-at-once-unnamed"],
)
def test_every_start_order_ends_with_the_chain_recorded_and_judged(redis_client, order, named):
    sim = SimulatorThread()
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.3))
    sim.start()
    env = command_env()
    names = ["--networks", "sim-1"] if named else []
    consumers = [
        ["stream_events", *names, "--no-live"],
        ["analyze", "missing-votes", *(["--network", "sim-1"] if named else []), "--poll-frequency", "1s"],
        ["index_validators", *names, "--poll-frequency", "2s"],
    ]
    subscriber = ["subscribe_events", "--networks", f"sim-1,{node.url}", "--health-interval", "1s"]
    logs: dict[str, list[str]] = {}
    procs: dict[str, subprocess.Popen] = {}
    try:
        for args in consumers:
            procs[args[0]] = start(args, env, logs.setdefault(args[0], []))
        if order == "consumers first":
            # They start before the chain exists and must wait for it, saying so once.
            wait_until(
                lambda: all(any("waiting for" in line for line in logs[a[0]]) for a in consumers),
                timeout=30,
                message="every consumer waiting for its chain",
            )
        procs["subscribe_events"] = start(subscriber, env, logs.setdefault("subscribe_events", []))
        wait_until(lambda: Vote.objects.filter(chain__name="sim-1").count() > 50, timeout=60, message="votes stored")
        wait_until(
            lambda: HeightVerdict.objects.filter(chain__name="sim-1").count() >= 3, timeout=60, message="heights judged"
        )
        assert all(p.poll() is None for p in procs.values()), {n: p.returncode for n, p in procs.items()}
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(20) for name, proc in procs.items()}
        sim.stop()
    assert codes == dict.fromkeys(procs, 0), {n: "".join(logs[n])[-2000:] for n in procs}
    for name, lines in logs.items():
        assert "Traceback" not in "".join(lines), name
