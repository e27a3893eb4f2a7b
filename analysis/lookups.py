"""The analyzer's questions to nodes, asked off the judging path.

Judging reads only the database. When a height needs a node's answer (its canonical commit, to
cross-check a precommit ctop did not see; or the validator set of a height the indexer has not
reached; the facts of committed blocks, for proposer statistics), the question goes to a small
pool of threads, at most one job of each kind per chain at a time, and the height waits for a later
tick. So
a chain whose endpoint is slow, dripping or dead costs one pool thread for at most its deadlines,
and every other chain is judged and alerted on time. The analyzer is woken as soon as an answer
comes back, so a healthy endpoint adds no tick of delay.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable

from common.pool import KeyedPool
from consensus import protocol as p
from consensus.endpoints import NoUsableEndpoint, best_client
from consensus.models import Chain
from consensus.rpc import EndpointError, RPCClient
from consensus.selectors import latest_stored_height
from consensus.services import store_commit
from validators.indexer import ChainIndexer, IndexerError

from . import blocks

log = logging.getLogger("ctop.analyzer")

JOB_DEADLINE = 30.0  # seconds one chain's commit look-ups may take before yielding the pool thread
ANSWERS_KEPT = 10_000  # answers nobody took (heights judged without them): dropped beyond this many


class CommitLookup(enum.Enum):
    STORED = "stored"  # the canonical commit's signatures are in the database now
    NOT_YET = "not yet"  # height+1 is not committed yet: ask again on a later tick
    UNAVAILABLE = "unavailable"  # no endpoint answered, or the node pruned the height
    PENDING = "pending"  # asked; the answer has not come back yet


class RemoteLookups:
    def __init__(
        self,
        *,
        workers: int = 4,
        on_done: Callable[[], None] | None = None,
        client_factory: Callable[[str], RPCClient] | None = None,
    ) -> None:
        self.pool = KeyedPool(workers, "analyzer-lookup", on_done=on_done)
        self.client_factory = client_factory
        self._answers: dict[tuple[int, int], tuple[CommitLookup, float]] = {}  # and when it came back
        self._lock = threading.Lock()
        self.asked = 0  # questions submitted so far (settle() stops when a tick asks nothing new)
        self.blocks_failed: dict[int, float] = {}  # chain id -> when its last block-meta fetch failed
        self.blocks_covered: dict[int, int] = {}  # chain id -> highest height answered for

    # --- commits ---

    def commit(self, chain: Chain, height: int, *, take: bool = True) -> CommitLookup | None:
        """The answer for `height` if one came back (taken unless take=False; a NOT_YET is kept
        until the next answer or forget(), for not_yet_age()), or PENDING while a look-up for the
        chain is under way, or None: not asked."""
        key = (chain.pk, height)
        with self._lock:
            kept = self._answers.get(key)
            if take and kept is not None and kept[0] is not CommitLookup.NOT_YET:
                del self._answers[key]
        answer = kept[0] if kept else None
        if answer is None and self.pool.busy(("commit", chain.pk)):
            return CommitLookup.PENDING
        return answer

    def not_yet_age(self, chain: Chain, height: int) -> float | None:
        """Seconds since `height` was answered NOT_YET (None: it was not, or was asked again since)."""
        with self._lock:
            kept = self._answers.get((chain.pk, height))
        if kept is None or kept[0] is not CommitLookup.NOT_YET:
            return None
        return time.monotonic() - kept[1]

    def forget(self, chain: Chain, height: int) -> None:
        """The height is judged: its kept answer is of no more use."""
        with self._lock:
            self._answers.pop((chain.pk, height), None)

    def ask_commits(self, chain: Chain, heights: list[int]) -> None:
        if heights and self.pool.submit(
            ("commit", chain.pk),
            lambda: self._fetch_commits(chain, heights),
            what=f"{chain.name}: commit look-up of {len(heights)} height(s)",
        ):
            self.asked += 1

    def _fetch_commits(self, chain: Chain, heights: list[int]) -> None:
        """One endpoint choice (a /status per endpoint) for the whole run of heights."""
        try:
            client, _ = best_client(chain, self.client_factory, record=latest_stored_height(chain))
        except NoUsableEndpoint as exc:
            log.warning("%s: cannot cross-check precommits now: %s", chain.name, exc)
            self._answer(chain, heights, CommitLookup.UNAVAILABLE)
            return
        deadline = time.monotonic() + JOB_DEADLINE
        for i, height in enumerate(heights):
            if time.monotonic() > deadline:  # a slow endpoint: the rest wait for a later job
                log.warning(
                    "%s: commit look-ups stopped after %.0fs, %d height(s) left",
                    chain.name,
                    JOB_DEADLINE,
                    len(heights) - i,
                )
                return
            try:
                commit = client.commit(height)
            except (EndpointError, p.ProtocolError) as exc:  # RPCError too: e.g. a pruned height
                log.warning("%s h=%d: cannot cross-check precommits: %s", chain.name, height, exc)
                self._answer(chain, [height], CommitLookup.UNAVAILABLE)
                continue
            if commit.height != height:
                log.warning(
                    "%s h=%d: the node answered with the commit of height %d", chain.name, height, commit.height
                )
                self._answer(chain, [height], CommitLookup.UNAVAILABLE)
            elif not commit.canonical:
                self._answer(chain, [height], CommitLookup.NOT_YET)
            else:
                store_commit(chain, commit)
                self._answer(chain, [height], CommitLookup.STORED)

    def _answer(self, chain: Chain, heights: list[int], answer: CommitLookup) -> None:
        now = time.monotonic()
        with self._lock:
            for h in heights:
                self._answers[(chain.pk, h)] = (answer, now)
            if len(self._answers) > ANSWERS_KEPT:  # answers of heights judged without them: oldest go
                for key, _ in sorted(self._answers.items(), key=lambda kv: kv[1][1])[: len(self._answers) // 2]:
                    del self._answers[key]

    # --- validator sets ---

    def ask_set(self, chain: Chain) -> bool:
        """Index the chain's set now (the indexer has not reached the heights to judge); False if an
        indexing of this chain is already under way."""
        submitted = self.pool.submit(("set", chain.pk), lambda: self._index(chain), what=f"{chain.name}: set indexing")
        self.asked += submitted
        return submitted

    @staticmethod
    def _index(chain: Chain) -> None:
        with contextlib.suppress(IndexerError):  # logged and recorded by the indexer; the heights wait
            ChainIndexer(chain).run_once()

    # --- block metas ---

    def ask_blocks(self, chain: Chain, lo: int, hi: int) -> bool:
        """Fetch and store the block metas of lo..hi (False: a fetch for the chain is under way)."""
        submitted = self.pool.submit(
            ("blocks", chain.pk), lambda: self._fetch_blocks(chain, lo, hi), what=f"{chain.name}: blocks {lo}..{hi}"
        )
        self.asked += submitted
        return submitted

    def _fetch_blocks(self, chain: Chain, lo: int, hi: int) -> None:
        try:
            client, status = best_client(chain, self.client_factory, record=latest_stored_height(chain))
            # Heights the node pruned or has not reached: CometBFT answers a page wholly outside its
            # range with an error, so they are left out of the question. Pruned ones are done (the
            # node will never have them); those above its latest height are asked for later.
            pruned_to = min(hi, status.earliest_height - 1) if status.earliest_height else lo - 1
            lo, hi = max(lo, pruned_to + 1), min(hi, status.latest_height)
            result = blocks.fetch(chain, client, lo, hi, deadline=time.monotonic() + JOB_DEADLINE) if lo <= hi else None
        except (NoUsableEndpoint, EndpointError, p.ProtocolError) as exc:  # RPCError too
            log.warning("%s: cannot read block metas %d..%d now: %s", chain.name, lo, hi, exc)
            with self._lock:
                self.blocks_failed[chain.pk] = time.monotonic()
            return
        covered = max(pruned_to, result.covered if result else pruned_to)
        with self._lock:
            self.blocks_covered[chain.pk] = max(covered, self.blocks_covered.get(chain.pk, 0))
            if result is not None and result.covered < hi:  # stopped at its deadline: a slow endpoint
                self.blocks_failed[chain.pk] = time.monotonic()
        if result is not None and result.refused:
            log.warning("%s: %d block meta(s) of %d..%d refused", chain.name, len(result.refused), lo, hi)

    def wait(self, timeout: float | None = None) -> None:
        self.pool.wait(timeout)

    def close(self) -> None:
        self.pool.shutdown(wait=False)
