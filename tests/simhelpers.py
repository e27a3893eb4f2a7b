"""Helpers for tests that talk to the simulator like a client would."""

from __future__ import annotations

import json
import time

import requests
import websocket

from consensus import protocol as p


class WSClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.ws = websocket.create_connection(url.replace("http", "ws", 1) + "/websocket", timeout=timeout)
        self.next_id = 0

    def send(self, method: str, params: dict | None = None) -> int:
        rid = self.next_id
        self.next_id += 1
        self.ws.send(json.dumps({"jsonrpc": "2.0", "method": method, "id": rid, "params": params or {}}))
        return rid

    def subscribe(self, *events: str) -> None:
        for e in events:
            self.send("subscribe", {"query": f"tm.event='{e}'"})

    def recv(self, timeout: float = 5.0) -> str | None:
        self.ws.settimeout(timeout)
        try:
            return self.ws.recv()
        except websocket.WebSocketTimeoutException:
            return None

    def collect(self, seconds: float, until=None) -> list:
        """Decoded frames received within `seconds` (or until `until(values)` is true)."""
        out: list = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            raw = self.recv(max(0.01, deadline - time.monotonic()))
            if raw is None:
                continue
            try:
                out.append(p.decode_frame(raw))
            except p.ProtocolError as exc:
                out.append(exc)
            if until and until(out):
                break
        return out

    def close(self) -> None:
        self.ws.close()


def get(url: str, path: str, **params) -> requests.Response:
    return requests.get(url + path, params=params, timeout=5)


def wait_for_height(url: str, height: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = p.decode_status(get(url, "/status").text).latest_height
        if latest >= height:
            return latest
        time.sleep(0.05)
    raise AssertionError(f"{url} did not reach height {height} within {timeout}s")


def watched(sim, sim_chain, nodes: int = 1):
    """`sim_chain` served by `nodes` simulated nodes (started), and its Chain with their endpoints in
    priority order. Returns (chain, nodes)."""
    from consensus.models import Chain, Endpoint

    sim_nodes = sim.add_chain(sim_chain, nodes=nodes)
    sim.start()
    chain = Chain.objects.create(name=sim_chain.chain_id, chain_id=sim_chain.chain_id)
    for i, node in enumerate(sim_nodes):
        Endpoint.objects.create(chain=chain, url=node.url, priority=i)
    return chain, sim_nodes
