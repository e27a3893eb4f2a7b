"""Which endpoint of a chain to use: failover when one fails, is on the wrong chain, or lags, and
fail back by priority when it recovers.

Freshness is judged relative to the other endpoints: during a chain halt every endpoint's
latest_block_time ages together, and ctop must keep watching, not flap between them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from consensus import protocol as p
from consensus.rpc import EndpointError, RPCClient

if TYPE_CHECKING:
    from consensus.models import Chain

log = logging.getLogger("ctop.subscriber")


class NoUsableEndpoint(Exception):
    """Every endpoint of a chain failed, is on another chain, or lags (the message lists why)."""


@dataclass
class EndpointState:
    url: str
    priority: int
    status: p.Status | None = None
    error: str = ""
    checked_at: float = 0.0

    @property
    def reachable(self) -> bool:
        return self.status is not None and not self.error


@dataclass(frozen=True)
class Verdict:
    url: str
    healthy: bool
    reason: str  # "" when healthy


def judge(states: list[EndpointState], chain_id: str, *, max_lag_blocks: int, stale_after: float) -> list[Verdict]:
    """A verdict for every endpoint, in priority order."""
    candidates = [s for s in states if s.reachable and s.status and (not chain_id or s.status.chain_id == chain_id)]
    best_height = max((s.status.latest_height for s in candidates if s.status), default=0)
    best_time = max(
        (s.status.latest_block_time for s in candidates if s.status), default=datetime.min.replace(tzinfo=UTC)
    )
    verdicts = []
    for s in sorted(states, key=lambda s: s.priority):
        if not s.reachable or s.status is None:
            verdicts.append(Verdict(s.url, False, s.error or "not checked yet"))
        elif chain_id and s.status.chain_id != chain_id:
            verdicts.append(Verdict(s.url, False, f"wrong chain-id {s.status.chain_id!r} (expected {chain_id!r})"))
        elif s.status.catching_up:
            verdicts.append(Verdict(s.url, False, "catching up"))
        elif s.status.latest_height < best_height - max_lag_blocks:
            verdicts.append(Verdict(s.url, False, f"lagging: height {s.status.latest_height}, others at {best_height}"))
        elif (best_time - s.status.latest_block_time).total_seconds() > stale_after:
            verdicts.append(
                Verdict(s.url, False, f"stale: latest block {s.status.latest_block_time:%H:%M:%S}, others newer")
            )
        else:
            verdicts.append(Verdict(s.url, True, ""))
    return verdicts


def choose(verdicts: list[Verdict]) -> Verdict | None:
    """The preferred healthy endpoint (verdicts are in priority order)."""
    return next((v for v in verdicts if v.healthy), None)


def best_client(
    chain: Chain,
    client_factory: Callable[[str], RPCClient] | None = None,
    *,
    max_lag_blocks: int = 5,
    stale_after: float = 60.0,
) -> tuple[RPCClient, p.Status]:
    """A client for the endpoint subscribe_events would choose right now (one /status per endpoint):
    the preferred one on the right chain-id that neither lags nor has a stale latest block. For the
    commands that ask a node now and then (the indexer, the analyzer's commit look-ups)."""
    factory = client_factory or (lambda url: RPCClient(url, timeout=10))
    states, clients = [], {}
    for endpoint in chain.endpoints.filter(enabled=True).order_by("priority", "id"):
        client = clients[endpoint.url] = factory(endpoint.url)
        try:
            states.append(EndpointState(endpoint.url, endpoint.priority, client.status()))
        except (EndpointError, p.ProtocolError) as exc:
            states.append(EndpointState(endpoint.url, endpoint.priority, None, str(exc)))
    if not chain.chain_id:
        reported = next((s.status.chain_id for s in states if s.status), "")
        if reported:
            chain.check_chain_id(reported)
    verdicts = judge(states, chain.chain_id, max_lag_blocks=max_lag_blocks, stale_after=stale_after)
    chosen = choose(verdicts)
    for url, client in clients.items():
        if chosen is None or url != chosen.url:
            client.close()
    if chosen is None:
        errors = [f"{v.url}: {v.reason}" for v in verdicts]
        raise NoUsableEndpoint("no usable endpoint: " + ("; ".join(errors) or "none configured"))
    status = next(s.status for s in states if s.url == chosen.url)
    assert status is not None  # a healthy verdict has a status
    return clients[chosen.url], status


class HealthChecker(threading.Thread):
    """Polls /status of every endpoint of one chain, so the worker never blocks on HTTP while reading."""

    def __init__(
        self,
        chain_name: str,
        endpoints: list[tuple[str, int]],
        *,
        interval: float,
        timeout: float,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"health-{chain_name}", daemon=True)
        self.chain_name = chain_name
        self.states = [EndpointState(url, priority) for url, priority in endpoints]
        self.interval = interval
        self.timeout = timeout
        self.stop = stop
        self.lock = threading.Lock()
        self.checked = threading.Event()  # set after each full round of checks
        self._wake = threading.Event()

    def check_now(self) -> None:
        self._wake.set()

    def run(self) -> None:
        clients = {s.url: RPCClient(s.url, timeout=self.timeout) for s in self.states}
        try:
            while not self.stop.is_set():
                for state in self.states:
                    try:
                        status = clients[state.url].status()
                        error = ""
                    except EndpointError as exc:
                        status, error = None, exc.detail
                    except p.ProtocolError as exc:
                        status, error = None, f"/status: {exc}"
                    with self.lock:
                        state.status, state.error = status, error
                self.checked.set()
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            for client in clients.values():
                client.close()

    def snapshot(self) -> list[EndpointState]:
        with self.lock:
            return [EndpointState(s.url, s.priority, s.status, s.error) for s in self.states]

    def best_height(self) -> int:
        with self.lock:
            return max((s.status.latest_height for s in self.states if s.status), default=0)
