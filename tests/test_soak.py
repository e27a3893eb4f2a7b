"""Soak: the whole pipeline, as real processes, watches a healthy simulated chain and a hostile node
that plays every attack in turn, for a minute. Nothing dies, memory stays bounded, the healthy
chain's record and alerts are exact, and every refused input has a dead letter or a log line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from analysis.models import Alert, AlertKind, AlertSettings, ChannelKind, NotificationChannel
from consensus import protocol as p
from consensus.models import Chain, DeadLetter, Endpoint, Vote
from consensus.simulator import Scenario, SimChain, SimulatorThread, Window

from .conftest import ROOT
from .hostile import HostileNode, frame_header, new_round, vote
from .procs import command_env
from .receivers import Receiver
from .subscriberhelpers import wait_until

pytestmark = pytest.mark.slow

SOAK_SECONDS = 60
INT64_MAX = 2**63 - 1
EVIL_TEXT = "subscription was canceled (reason: \\n<!channel> @everyone\\r\\nBcc: all@example.com \\u202e)"


def attacks(node: HostileNode):
    """Each websocket connection gets the next attack; the subscriber reconnects after each."""

    async def script(ws):
        n = node.connections
        h = node.status_height() + 1
        kind = n % 5
        if kind == 1:  # forged heights, a height in Unicode digits, malformed JSON, then silence
            await ws.send(new_round(h))
            await ws.send(new_round(INT64_MAX))
            await ws.send(vote(INT64_MAX + 1))
            await ws.send(new_round(h).replace(f'"height":"{h}"', '"height":"1²"'))
            await ws.send('{"jsonrpc":"2.0","result":{"data":')
        elif kind == 2:  # a frame announcing 200 MiB
            await ws.send(new_round(h))
            await ws.flood(200 * 2**20)
        elif kind == 3:  # a frame dripped a byte at a time
            body = new_round(h).encode()
            await ws.drip(frame_header(len(body)) + body, 0.2)
        elif kind == 4:  # hostile text in a node error
            await ws.send(
                '{"jsonrpc":"2.0","id":0,"error":{"code":-32000,"message":"Server error","data":"' + EVIL_TEXT + '"}}'
            )
        else:  # an honest stretch
            for i in range(3):
                await ws.send(new_round(h + i))

    return script


@pytest.mark.django_db(transaction=True)
def test_a_minute_of_every_attack_beside_a_healthy_chain(redis_client):
    # The healthy chain: validator 2 is offline for heights 30-45 (exactly one alert, then resolved).
    sim = SimulatorThread()
    scenario = Scenario(offline=[Window(validator=2, start=30, end=45)])
    sim_chain = SimChain("sim-1", validators=4, block_time=0.3, scenario=scenario)
    (honest,) = sim.add_chain(sim_chain)
    honest.record = True
    sim.start()
    hostile = HostileNode().start()
    hostile.ws_script = attacks(hostile)
    hostile.routes["/validators"] = ("200 OK", b'{"jsonrpc":"2.0","id":-1,"result":{"validators":7}}')
    receiver = Receiver()
    healthy = Chain.objects.create(name="sim-1", chain_id="sim-1")
    Endpoint.objects.create(chain=healthy, url=honest.url)
    evil = Chain.objects.create(name="evil", chain_id="hostile-1")
    Endpoint.objects.create(chain=evil, url=hostile.url)
    for chain in (healthy, evil):
        AlertSettings.objects.create(chain=chain, grace_seconds=1, resolve_after=5, blind_after_seconds=5)
    NotificationChannel.objects.create(name="hook", kind=ChannelKind.WEBHOOK, target=receiver.url + "/hook")
    env = command_env()
    commands = {
        "subscribe_events": ["--silence-timeout", "3s", "--health-interval", "2s"],
        "stream_events": ["--no-live"],
        "index_validators": ["--poll-frequency", "5s"],
        "analyze": ["missing-votes", "--poll-frequency", "2s"],
    }
    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, list[str]] = {}
    peak: dict[str, int] = {}
    try:
        for name, args in commands.items():
            proc = subprocess.Popen(
                [sys.executable, "manage.py", name, *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            procs[name] = proc
            lines = logs.setdefault(name, [])
            threading.Thread(target=lambda p=proc, out=lines: out.extend(p.stderr), daemon=True).start()
        deadline = time.monotonic() + SOAK_SECONDS
        while time.monotonic() < deadline:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} died: {''.join(logs[name])[-3000:]}"
                peak[name] = max(peak.get(name, 0), psutil.Process(proc.pid).memory_info().rss)
            time.sleep(1.0)
        # Stop the healthy chain while the subscriber reads: everything sent is then received.
        sim.stop()
        wait_until(lambda: not sim_chain_moving(healthy), timeout=20, interval=1.0, message="the record settles")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(30) for name, proc in procs.items()}
        hostile.stop()
        receiver.close()
        if sim.loop.is_running():
            sim.stop()
    print("soak peak RSS (MiB):", {n: round(v / 2**20) for n, v in peak.items()}, "attacks:", hostile.connections)
    assert codes == dict.fromkeys(procs, 0), {n: "".join(logs[n])[-2000:] for n in procs}
    for name, lines in logs.items():
        assert "Traceback" not in "".join(lines), name
    assert hostile.connections >= 5  # every attack played (a misbehaving endpoint is retried less and less often)
    assert peak["subscribe_events"] < 250 * 2**20  # one 200 MiB frame would have doubled it

    # The healthy chain's record is exact: every vote the simulator sent is stored, nothing else.
    sent = set()
    for conn in honest.recorded:
        for frame in conn.sent_frames:
            value = p.decode_frame(frame)
            if isinstance(value, p.Vote):
                sent.add((value.height, value.round, value.type, value.validator_address))
    stored = set(Vote.objects.filter(chain=healthy).values_list("height", "round", "type", "validator__address"))
    assert len(sent) > 1000 and stored == sent
    # Its alerts are exact: validator 2's outage, opened and resolved; nothing else.
    alerts = list(Alert.objects.filter(chain=healthy).values_list("kind", "validator__address", "is_open"))
    offline = sim_chain.genesis[2].address
    assert alerts == [(AlertKind.MISSED_VOTES, offline, False)], alerts

    # Every refusal left a reason: forged heights and bad frames as dead letters, the dropped
    # connections and the broken /validators replies in the logs.
    reasons = list(DeadLetter.objects.filter(chain=evil).values_list("reason", flat=True))
    assert any("outside the plausible heights" in r for r in reasons)
    assert any("out of range" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    subscriber_log = "".join(logs["subscribe_events"])
    assert "message of 209715200 bytes" in subscriber_log and "took longer than" in subscriber_log
    assert "/validators: undecodable reply" in "".join(logs["index_validators"])
    # Hostile text reached no message as a second line or a mention.
    assert any(body["chain"] == "evil" for _, body in receiver.requests)  # the hostile chain's alerts were sent
    for _, body in receiver.requests:
        assert "\n" not in body["summary"] and "\r" not in body["summary"] and "\u202e" not in body["summary"]


def sim_chain_moving(chain: Chain) -> bool:
    """True while stored votes of `chain` still grow (the pipeline draining)."""
    before = Vote.objects.filter(chain=chain).count()
    time.sleep(2.0)
    return Vote.objects.filter(chain=chain).count() != before
