"""The simulator is honest: frames and replies from a real CometBFT localnet and from the simulator
have the same fields with the same JSON types, and decode to the same typed values."""

from __future__ import annotations

import json
import time

import pytest
import requests

from consensus import protocol as p
from consensus.simulator import SimChain, SimulatorThread

from .simhelpers import WSClient, wait_for_height

pytestmark = pytest.mark.localnet

EVENTS = ("NewRound", "NewRoundStep", "Vote", "CompleteProposal")


def shape(doc, path="") -> set[tuple[str, str]]:
    """Every (path, JSON type) in a document; list items collapse to [*]."""
    kind = {
        dict: "object",
        list: "array",
        str: "string",
        bool: "bool",
        int: "number",
        float: "number",
        type(None): "null",
    }[type(doc)]
    out = {(path, kind)}
    if isinstance(doc, dict):
        for k, v in doc.items():
            out |= shape(v, f"{path}.{k}")
    elif isinstance(doc, list):
        for v in doc:
            out |= shape(v, f"{path}[*]")
    return out


def without_optional_nulls(*shapes: set) -> list[set]:
    """A field that is null in one reply and typed in another is the same field: a real node's
    early commits often have an absent signer (signature null), which the simulator only produces
    when a scenario takes a validator offline (tested in test_simulator)."""
    typed = {path for s in shapes for path, kind in s if kind != "null"}
    return [{(path, kind) for path, kind in s if not (kind == "null" and path in typed)} for s in shapes]


def record(url: str, seconds: float) -> dict[str, list[str]]:
    ws = WSClient(url)
    ws.subscribe(*EVENTS)
    frames: dict[str, list[str]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        raw = ws.recv(0.5)
        if raw is None:
            continue
        doc = json.loads(raw)
        kind = doc.get("result", {}).get("data", {}).get("type", "reply")
        frames.setdefault(kind, []).append(raw)
    ws.close()
    return frames


def shapes_of(frames: list[str]) -> set:
    out: set = set()
    for f in frames:
        out |= shape(json.loads(f))
    return out


def test_event_frames_have_the_same_shapes(localnet):
    real = record(localnet.nodes[0].rpc_url, 4.0)
    sim = SimulatorThread()
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.3))
    sim.start()
    try:
        fake = record(node.url, 3.0)
    finally:
        sim.stop()
    for kind in (
        "tendermint/event/Vote",
        "tendermint/event/NewRound",
        "tendermint/event/RoundState",
        "tendermint/event/CompleteProposal",
        "reply",
    ):
        assert real.get(kind), f"the localnet sent no {kind}"
        assert fake.get(kind), f"the simulator sent no {kind}"
        assert shapes_of(fake[kind]) == shapes_of(real[kind]), kind
        real_types = {type(p.decode_frame(f)).__name__ for f in real[kind]}
        fake_types = {type(p.decode_frame(f)).__name__ for f in fake[kind]}
        assert real_types == fake_types


def test_http_replies_have_the_same_shapes(localnet):
    sim = SimulatorThread()
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.2))
    sim.start()
    try:
        wait_for_height(node.url, 3)
        localnet.wait_for_height(3)
        real_url, fake_url = localnet.nodes[0].rpc_url, node.url
        for path, decoder in [
            ("/status", p.decode_status),
            ("/validators?per_page=2&page=2", p.decode_validators),
            ("/block?height=2", p.decode_block),
            ("/commit?height=2", p.decode_commit),
        ]:
            real = requests.get(real_url + path, timeout=5)
            fake = requests.get(fake_url + path, timeout=5)
            assert real.status_code == fake.status_code == 200
            real_shape, fake_shape = without_optional_nulls(shape(real.json()), shape(fake.json()))
            assert fake_shape == real_shape, path
            assert type(decoder(real.text)) is type(decoder(fake.text))
        bad_real = requests.get(real_url + "/validators?page=9&per_page=2", timeout=5)
        bad_fake = requests.get(fake_url + "/validators?page=9&per_page=2", timeout=5)
        assert bad_real.status_code == bad_fake.status_code == 500
        assert bad_real.json() == bad_fake.json()
    finally:
        sim.stop()
