"""The validator indexer: the active set of every height a chain goes through, exactly.

Each pass reads the whole set (every page) at the chain's latest height. If it differs from the set
recorded for the last verified height, the heights in between are bisected with
`/validators?height=H` until every change is found at its exact height, so a change between polls
never makes the analysis blame the wrong validators. A failed or partial read changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from common.text import one_line, redact_url
from consensus import protocol as p
from consensus.endpoints import NoUsableEndpoint, best_client
from consensus.models import Chain
from consensus.protocol.keys import address_of
from consensus.rpc import EndpointError, RPCClient
from consensus.selectors import latest_stored_height

from .models import SetIndexState, SetMembership
from .selectors import active_set
from .services import Member, SetDiff, apply_set

log = logging.getLogger("ctop.indexer")

PER_PAGE = 100  # the node's maximum
PASS_DEADLINE = 120.0  # seconds one pass may spend bisecting a chain's set changes
MAX_PAGES = 101  # 10,000 validators (CometBFT's cap) / 100


class IndexerError(Exception):
    """A read that cannot be trusted (an RPC error, a page missing, a set that changed mid-read)."""


class HeightUnavailable(IndexerError):
    """The node has no set for the height asked (above its latest, or pruned): its own answer."""


def fetch_set(client: RPCClient, height: int | None = None) -> tuple[int, list[Member]]:
    """The whole active set at `height` (default: the node's latest), every page, checked."""
    try:
        first = client.validators(height, page=1, per_page=PER_PAGE)
        h, total = first.block_height, first.total
        if height is not None and h != height:  # a node answering for another height is not believed
            raise IndexerError(f"{redact_url(client.url)}: asked for the set at height {height}, got height {h}")
        infos = list(first.validators)
        page = 2
        started = time.monotonic()
        while len(infos) < total:
            if time.monotonic() - started > PASS_DEADLINE:
                raise IndexerError(
                    f"{redact_url(client.url)}: reading the set at height {h} took over {PASS_DEADLINE:.0f}s"
                )
            if page > MAX_PAGES:
                raise IndexerError(f"{redact_url(client.url)}: more than {MAX_PAGES} pages at height {h}")
            nxt = client.validators(h, page=page, per_page=PER_PAGE)
            if nxt.block_height != h or nxt.total != total or not nxt.validators:
                raise IndexerError(f"{redact_url(client.url)}: page {page} at height {h} is inconsistent with page 1")
            infos += nxt.validators
            page += 1
    except p.RPCError as exc:
        if exc.kind is p.RPCErrorKind.HEIGHT_UNAVAILABLE:
            raise HeightUnavailable(str(exc)) from None
        raise IndexerError(str(exc)) from None
    except (EndpointError, p.ProtocolError) as exc:
        raise IndexerError(str(exc)) from None
    if len(infos) != total or len({v.address for v in infos}) != total:
        raise IndexerError(f"{redact_url(client.url)}: height {h}: {len(infos)} validators read, total says {total}")
    for v in infos:
        derived = address_of(v.pub_key_type, v.pub_key)
        if derived is not None and derived != v.address:
            raise IndexerError(
                f"{redact_url(client.url)}: validator {v.address} reports a public key whose address is {derived}"
            )
    return h, [Member(v.address, v.voting_power, i, v.pub_key_type, v.pub_key) for i, v in enumerate(infos)]


def _key(members: list[Member]) -> list[tuple[str, int, int]]:
    return [(m.address, m.voting_power, m.position) for m in members]


def recorded_key(chain_id: int, height: int) -> list[tuple[str, int, int]]:
    return [(m.validator.address, m.voting_power, m.position) for m in active_set(chain_id, height)]


@dataclass
class PassResult:
    height: int
    changes: list[tuple[int, SetDiff]]
    exact: bool = True

    def __str__(self) -> str:
        if not self.changes:
            return f"h={self.height}: unchanged"
        return "; ".join(f"h={h}: {diff}" for h, diff in self.changes)


class ChainIndexer:
    def __init__(
        self, chain: Chain, *, client_factory: Callable[[str], RPCClient] | None = None, max_probes: int = 200
    ) -> None:
        self.chain = chain
        self.client_factory = client_factory or (lambda url: RPCClient(url, timeout=10))
        self.max_probes = max_probes

    def _client(self) -> tuple[RPCClient, p.Status]:
        try:
            return best_client(self.chain, self.client_factory, record=latest_stored_height(self.chain))
        except NoUsableEndpoint as exc:
            raise IndexerError(str(exc)) from None

    def run_once(self) -> PassResult:
        try:
            result = self._pass()
        except IndexerError as exc:
            SetIndexState.objects.filter(chain=self.chain).update(
                last_error=one_line(exc, 2000), last_error_at=timezone.now()
            )
            log.error("%s: validator set not updated: %s", self.chain.name, exc)
            raise
        for h, diff in result.changes:
            log.info("%s h=%d: %s", self.chain.name, h, diff)
        return result

    def _pass(self) -> PassResult:
        client, status = self._client()
        # The set of the height in progress is fixed once the previous height committed, and the
        # node serves it: reading it saves the analyzer a pass for each new height. A node that
        # refuses that height (an older CometBFT) is asked for its latest height instead; any other
        # failure (a forged key, pages that disagree) is the pass's error, not a reason to look away.
        try:
            height, members = fetch_set(client, status.latest_height + 1 if status.latest_height else None)
        except HeightUnavailable:
            height, members = fetch_set(client, status.latest_height or None)
        state = SetIndexState.objects.filter(chain=self.chain).first()
        has_history = SetMembership.objects.filter(chain=self.chain).exists()
        if state is None or not has_history:
            diff = apply_set(self.chain.pk, height, members)
            self._verified(height)
            return PassResult(height, [(height, diff)])
        if height <= state.verified_height:
            return PassResult(height, [])  # a lagging node: nothing newer to learn
        known = recorded_key(self.chain.pk, state.verified_height)
        if _key(members) == known:
            self._verified(height)
            return PassResult(height, [])
        changes, exact = self._bisect(client, state.verified_height, known, height, members)
        self._verified(height)
        return PassResult(height, changes, exact)

    def _bisect(self, client, lo: int, lo_key, hi: int, hi_members: list[Member]):
        """Find every change in (lo, hi]: the first height whose set differs from lo's, repeatedly."""
        changes: list[tuple[int, SetDiff]] = []
        probes = 0
        hi_key = _key(hi_members)
        # A pass has a total deadline too: a slow endpoint answering every probe just in time must
        # not hold the pool's thread for hours (what is left is recorded as found, possibly late).
        deadline = time.monotonic() + PASS_DEADLINE
        while lo_key != hi_key:
            a, b = lo, hi  # the set at a is lo_key; the set at b differs from it
            b_members = hi_members
            while b - a > 1 and probes < self.max_probes and time.monotonic() < deadline:
                mid = (a + b) // 2
                probes += 1
                try:
                    _, mid_members = fetch_set(client, mid)
                except IndexerError as exc:
                    log.warning(
                        "%s: cannot read the set at height %d (%s); the change is recorded at %d, "
                        "possibly later than it happened",
                        self.chain.name,
                        mid,
                        exc,
                        b,
                    )
                    break
                if _key(mid_members) == lo_key:
                    a = mid
                else:
                    b, b_members = mid, mid_members
            exact = b - a <= 1
            changes.append((b, apply_set(self.chain.pk, b, b_members)))
            if not exact:
                return changes, False
            lo, lo_key = b, _key(b_members)
        return changes, True

    def _verified(self, height: int) -> None:
        SetIndexState.objects.update_or_create(
            chain=self.chain,
            defaults={"verified_height": height, "verified_at": timezone.now(), "last_error": ""},
        )


def ensure_set_at(chain: Chain, height: int) -> bool:
    """Make sure the history is exact at `height` (the analysis calls this before judging it).
    Returns False if it cannot be known yet (the chain is not there, or the endpoints fail)."""
    state = SetIndexState.objects.filter(chain=chain).first()
    if state and height <= state.verified_height:
        return True
    try:
        result = ChainIndexer(chain).run_once()
    except IndexerError:
        return False
    return height <= result.height
