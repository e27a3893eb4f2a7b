"""Which endpoint of a chain to use: the preferred one that is on the right chain-id, not catching
up, reports a plausible height, and neither lags in height nor has a stale latest block.

Freshness is judged relative to the other endpoints: during a chain halt every endpoint's
latest_block_time ages together, and ctop must keep watching, not flap between them. A height that
nothing vouches for (consensus.plausible) makes its endpoint unusable: one liar reporting
height 2^63 must not make every honest endpoint look "lagging".

The subscriber keeps the states current in its health checker; the indexer and the analyzer ask
once when they need a node (`best_client`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.conf import settings

from common.text import redact_url

from . import protocol as p
from .plausible import HeightReference, Reading
from .rpc import EndpointError, RPCClient

if TYPE_CHECKING:
    from .models import Chain


class NoUsableEndpoint(Exception):
    """Every endpoint of a chain failed, is on another chain, or lags (the message lists why)."""


@dataclass
class EndpointState:
    url: str
    priority: int
    status: p.Status | None = None
    error: str = ""
    checked_at: float = 0.0  # monotonic time of the last /status answer or failure
    implausible: str = ""  # why its reported height is not believed ("" = it is)
    corroborated: bool = False  # another endpoint, or ctop's own record, agrees with its height
    penalty_until: float = 0.0  # monotonic: a failed websocket session keeps it out of use until then
    penalty_reason: str = ""
    failures: int = 0  # websocket sessions in a row that ended without events

    @property
    def reachable(self) -> bool:
        return self.status is not None and not self.error


@dataclass(frozen=True)
class EndpointCheck:
    """Whether an endpoint may be used now, and why not."""

    url: str
    usable: bool
    reason: str  # "" when usable


def check_endpoints(
    states: list[EndpointState],
    chain_id: str,
    *,
    max_lag_blocks: int,
    stale_after: float,
    now: float | None = None,
) -> list[EndpointCheck]:
    """A check for every endpoint, in priority order."""
    now = time.monotonic() if now is None else now
    candidates = [
        s
        for s in states
        if s.reachable and s.status and not s.implausible and (not chain_id or s.status.chain_id == chain_id)
    ]
    # "Lagging" and "stale" are measured against corroborated readings (another endpoint or ctop's
    # own record agrees): one endpoint claiming to be ahead must not make the others look behind.
    # With none (a first start, endpoints that disagree), against the lowest: a liar can only
    # inflate, so nobody is called lagging and the configured priority decides.
    measured = [s for s in candidates if s.corroborated] or sorted(
        candidates, key=lambda s: s.status.latest_height if s.status else 0
    )[:1]
    best_height = max((s.status.latest_height for s in measured if s.status), default=0)
    best_time = max(
        (s.status.latest_block_time for s in measured if s.status), default=datetime.min.replace(tzinfo=UTC)
    )
    checks = []
    for s in sorted(states, key=lambda s: s.priority):
        if not s.reachable or s.status is None:
            checks.append(EndpointCheck(s.url, False, s.error or "not checked yet"))
        elif chain_id and s.status.chain_id != chain_id:
            checks.append(
                EndpointCheck(s.url, False, f"wrong chain-id {s.status.chain_id!r:.80} (expected {chain_id!r})")
            )
        elif s.implausible:
            checks.append(EndpointCheck(s.url, False, s.implausible))
        elif s.status.catching_up:
            checks.append(EndpointCheck(s.url, False, "catching up"))
        elif s.penalty_until > now:
            checks.append(EndpointCheck(s.url, False, s.penalty_reason or "failed recently"))
        elif s.status.latest_height < best_height - max_lag_blocks:
            checks.append(
                EndpointCheck(s.url, False, f"lagging: height {s.status.latest_height}, others at {best_height}")
            )
        elif (best_time - s.status.latest_block_time).total_seconds() > stale_after:
            checks.append(
                EndpointCheck(s.url, False, f"stale: latest block {s.status.latest_block_time:%H:%M:%S}, others newer")
            )
        else:
            checks.append(EndpointCheck(s.url, True, ""))
    return checks


def choose(checks: list[EndpointCheck]) -> EndpointCheck | None:
    """The preferred usable endpoint (checks are in priority order)."""
    return next((c for c in checks if c.usable), None)


def mark_implausible(states: list[EndpointState], reference: HeightReference, now: float | None = None) -> None:
    """Assess the reported heights (see consensus.plausible) and mark the ones nothing vouches for."""
    readings = [
        Reading(s.url, s.status.latest_height, s.status.catching_up, s.checked_at or None)
        for s in states
        if s.reachable and s.status
    ]
    complete = all(s.checked_at for s in states)
    bad, corroborated = reference.assess(readings, now, complete=complete)
    window = reference.window(now)
    for s in states:
        s.implausible = ""
        s.corroborated = s.url in corroborated
        if s.url in bad and s.status is not None:
            limit = f" (plausible up to {window.ceiling})" if window else ""
            s.implausible = f"reports height {s.status.latest_height}, which nothing vouches for{limit}"


def best_client(
    chain: Chain,
    client_factory: Callable[[str], RPCClient] | None = None,
    *,
    max_lag_blocks: int = 5,
    stale_after: float = 60.0,
    record: tuple[int, float] | None = None,
) -> tuple[RPCClient, p.Status]:
    """A client for the endpoint subscribe_events would choose right now (one /status per endpoint):
    the preferred one on the right chain-id that neither lags nor has a stale latest block, whose
    height is plausible (`record`: ctop's own latest height and how many seconds ago it was seen).
    For the commands that ask a node now and then (the indexer, the analyzer's commit look-ups)."""
    factory = client_factory or (lambda url: RPCClient(url, timeout=10))
    states, clients = [], {}
    for endpoint in chain.endpoints.filter(enabled=True).order_by("priority", "id"):
        client = clients[endpoint.url] = factory(endpoint.url)
        try:
            status, error = client.status(), ""
        except (EndpointError, p.ProtocolError) as exc:
            status, error = None, str(exc)
        states.append(EndpointState(endpoint.url, endpoint.priority, status, error, checked_at=time.monotonic()))
    reference = HeightReference(max_rate=settings.CTOP["MAX_BLOCKS_PER_SECOND"], agree=max_lag_blocks)
    if record is not None:
        reference.note_record(record[0], reference.clock() - record[1])
    mark_implausible(states, reference)
    if not chain.chain_id:
        reported = next((s.status.chain_id for s in states if s.status and not s.implausible), "")
        if reported:
            chain.check_chain_id(reported)
    checks = check_endpoints(states, chain.chain_id, max_lag_blocks=max_lag_blocks, stale_after=stale_after)
    chosen = choose(checks)
    if chosen is None:
        errors = [f"{redact_url(c.url)}: {c.reason}" for c in checks]
        raise NoUsableEndpoint("no usable endpoint: " + ("; ".join(errors) or "none configured"))
    status = next(s.status for s in states if s.url == chosen.url)
    assert status is not None  # a usable endpoint has a status
    return clients[chosen.url], status
