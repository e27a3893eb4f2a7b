"""The first two stages end to end on a real CometBFT localnet: websocket -> Redis -> PostgreSQL."""

from __future__ import annotations

import pytest

from consensus import protocol as p
from consensus.ingest import StreamConsumer
from consensus.models import Chain, Vote, VoteSignature, block_tag
from consensus.rpc import RPCClient
from consensus.subscriber import ChainTarget

from .subscriberhelpers import running, wait_until

pytestmark = pytest.mark.localnet


@pytest.mark.django_db(transaction=True)
def test_database_holds_every_vote_and_matches_the_commits(localnet, redis_client):
    chain = Chain.objects.create(name="localnet", chain_id="injective-777")
    addresses = {n.address for n in localnet.nodes}
    target = ChainTarget("localnet", "injective-777", [(localnet.nodes[2].rpc_url, 0)])
    consumer = StreamConsumer([chain], client=redis_client, consumer="e2e", block_ms=100)
    consumer.ensure_groups()
    with running([target], redis_client) as runner:
        wait_until(lambda: (runner.workers[0].last_height or 0) > 0, timeout=60)
        first = runner.workers[0].last_height + 1  # a whole height
        localnet.wait_for_height(first + 6, node=2)
        consumer.run_once()
        wait_until(lambda: consumer.run_once() == 0 and consumer.idle, timeout=30, interval=0.01)
    while consumer.run_once():
        pass
    rpc = RPCClient(localnet.nodes[2].rpc_url)
    for h in range(first, first + 5):
        votes = Vote.objects.filter(chain=chain, height=h).select_related("validator")
        commit = rpc.block(h + 1).last_commit
        assert commit.height == h
        precommits = {v.validator.address: v for v in votes if v.type == p.PRECOMMIT and v.round == commit.round}
        prevotes = {v.validator.address for v in votes if v.type == p.PREVOTE}
        # CometBFT drops a prevote that arrives after the height is committed: a quorum at least.
        assert len(prevotes) * 3 > len(addresses) * 2, h
        matched = 0
        for sig in commit.signatures:
            stored = precommits.get(sig.validator_address)
            if sig.flag == p.FLAG_COMMIT and stored is not None:
                assert stored.block_tag == block_tag(commit.block_hash)
                # The vote's own timestamp, kept as an offset from its arrival, is the chain's to 10 ms.
                assert abs((stored.timestamp - sig.timestamp).total_seconds()) <= 0.005 + 1e-6
                matched += 1
        # A precommit that reached the observer only after it moved on is never emitted: a quorum.
        assert matched * 3 > len(addresses) * 2, h
        assert set(precommits) <= addresses, h
    assert not VoteSignature.objects.exists()  # CTOP_VOTE_SIGNATURES is off by default
