"""Commit signatures for the analyzer's cross-check.

A precommit the observed node never relayed (it reached the node after it moved on) is still in the
next block's commit when the chain counted it. Before calling a validator's precommit missing, the
analyzer asks a node for `/commit?height=H` and stores its signatures. Only the canonical commit (the
one height H+1 carries) is stored: before H+1 is committed the node returns its own "seen" commit,
which holds nothing more than the events it already relayed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

from consensus import protocol as p
from consensus.endpoints import NoUsableEndpoint, best_client
from consensus.ingest.decode import Batch
from consensus.ingest.store import ValidatorCache, persist
from consensus.models import Chain
from consensus.rpc import EndpointError, RPCClient

log = logging.getLogger("ctop.analyzer")


class CommitLookup(enum.Enum):
    STORED = "stored"  # the canonical commit's signatures are in the database now
    NOT_YET = "not yet"  # height+1 is not committed yet: ask again on a later tick
    UNAVAILABLE = "unavailable"  # no endpoint answered, or the node pruned the height


class CommitFetcher:
    """Commit look-ups for one chain during one analyzer tick: the endpoint is chosen once (one
    /status per endpoint) and reused for every height that needs a look, and a chain with no usable
    endpoint is not asked again until the next tick."""

    def __init__(self, chain: Chain, client_factory: Callable[[str], RPCClient] | None = None) -> None:
        self.chain = chain
        self.client_factory = client_factory
        self._client: RPCClient | None = None
        self._unavailable = False

    def _get_client(self) -> RPCClient | None:
        if self._client is None and not self._unavailable:
            try:
                self._client, _ = best_client(self.chain, self.client_factory)
            except NoUsableEndpoint as exc:
                log.warning("%s: cannot cross-check precommits this tick: %s", self.chain.name, exc)
                self._unavailable = True
        return self._client

    def fetch(self, height: int) -> CommitLookup:
        client = self._get_client()
        if client is None:
            return CommitLookup.UNAVAILABLE
        try:
            commit = client.commit(height)
        except (EndpointError, p.ProtocolError) as exc:  # RPCError too: e.g. a pruned height
            log.warning("%s h=%d: cannot cross-check precommits: %s", self.chain.name, height, exc)
            return CommitLookup.UNAVAILABLE
        if not commit.canonical:
            return CommitLookup.NOT_YET
        batch = Batch()
        batch.add_commit(self.chain.pk, commit)
        persist(batch, ValidatorCache())
        return CommitLookup.STORED

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
