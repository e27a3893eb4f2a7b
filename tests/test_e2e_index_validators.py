"""index_validators on a real CometBFT localnet."""

from __future__ import annotations

import pytest

from consensus import protocol as p
from consensus.models import Chain, Endpoint
from validators.indexer import ChainIndexer
from validators.selectors import active_set

from .simhelpers import WSClient

pytestmark = pytest.mark.localnet


@pytest.mark.django_db
def test_real_validators_addresses_and_powers_match_their_votes(localnet):
    chain = Chain.objects.create(name="localnet")  # the chain-id is learned from the node
    Endpoint.objects.create(chain=chain, url=localnet.nodes[1].rpc_url)
    result = ChainIndexer(chain).run_once()
    chain.refresh_from_db()
    assert chain.chain_id == "injective-777"
    members = list(active_set(chain.pk, result.height))
    assert {m.validator.address for m in members} == {n.address for n in localnet.nodes}
    assert all(m.voting_power == 1000 for m in members)
    assert sorted(m.validator.address for m in members) == [m.validator.address for m in members]  # equal powers
    ws = WSClient(localnet.nodes[1].rpc_url)
    ws.subscribe("Vote")
    votes = [
        v
        for v in ws.collect(10.0, until=lambda vs: len({getattr(x, "validator_address", 0) for x in vs}) >= 5)
        if isinstance(v, p.Vote)
    ]
    ws.close()
    positions = {m.validator.address: m.position for m in members}
    assert {v.validator_address for v in votes} == set(positions)
    assert all(positions[v.validator_address] == v.validator_index for v in votes)
