"""Running the subscriber against the simulator in tests."""

from __future__ import annotations

import json
import threading
import time
from contextlib import contextmanager

from consensus import protocol as p
from consensus.protocol.stream import decode_entry, entry_frames
from consensus.streams import stream_key
from consensus.subscriber import ChainTarget, Options, SubscribeRunner

# The simulator makes up to 20 heights a second in these tests, faster than any real chain: the
# plausible window's rate is raised to match.
FAST = Options(
    silence_timeout=2.0,
    health_interval=0.3,
    http_timeout=2.0,
    stale_after=5.0,
    backoff_base=0.05,
    backoff_max=0.5,
    max_blocks_per_second=100.0,
)


@contextmanager
def running(targets, client, **kw):
    """A SubscribeRunner in a background thread; stopped (and flushed) on exit."""
    kw.setdefault("options", FAST)
    kw.setdefault("log_interval", 1.0)
    runner = SubscribeRunner(targets, client=client, **kw)
    runner.start()  # workers exist before the test looks at them; run() does not start them twice
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("report", runner.run()), daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop.set()
        thread.join(20)
    runner.report = result.get("report")


def target(name: str, *nodes, chain_id: str = "") -> ChainTarget:
    return ChainTarget(name, chain_id, [(n.url, i) for i, n in enumerate(nodes)])


def entries(client, chain: str) -> list:
    return [decode_entry(fields) for _, fields in client.xrange(stream_key(chain))]


def frames(client, chain: str) -> list[str]:
    return [f.decode() for e in entries(client, chain) for f in entry_frames(e)]


def entries_of_kind(client, chain: str, kind: bytes) -> list[dict]:
    return [json.loads(e.payload) for e in entries(client, chain) if e.kind == kind]


def decoded(client, chain: str) -> list:
    out = []
    for f in frames(client, chain):
        try:
            out.append(p.decode_frame(f))
        except p.ProtocolError as exc:
            out.append(exc)
    return out


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
