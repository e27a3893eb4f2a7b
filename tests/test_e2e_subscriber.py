"""subscribe_events against a real 4-validator CometBFT localnet."""

from __future__ import annotations

import time

import pytest

from consensus import protocol as p
from consensus.protocol.stream import KIND_GAP
from consensus.rpc import RPCClient
from consensus.subscriber import ChainTarget

from .subscriberhelpers import decoded, entries_of_kind, running, wait_until

pytestmark = pytest.mark.localnet


def votes(client):
    return [v for v in decoded(client, "localnet") if isinstance(v, p.Vote)]


def test_all_validators_votes_land_in_redis_and_a_node_restart_is_survived(localnet, redis_client, request):
    addresses = {n.address for n in localnet.nodes}
    target = ChainTarget("localnet", "injective-777", [(localnet.nodes[0].rpc_url, 0), (localnet.nodes[1].rpc_url, 1)])
    with running([target], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: len({v.height for v in votes(redis_client)}) >= 6, timeout=60, message="6 heights")
        seen = votes(redis_client)
        heights = sorted({v.height for v in seen})
        rpc = RPCClient(localnet.nodes[0].rpc_url)
        prevoters: set[str] = set()
        for h in heights[1:-1]:  # whole heights (the first may have started before we subscribed)
            commit = rpc.block(h + 1).last_commit
            voted = {v.validator_address for v in seen if v.height == h and v.type == p.PREVOTE}
            # A prevote that reaches the node after it committed the height is dropped by CometBFT
            # itself (votes of past heights other than precommits are ignored): a quorum at least.
            assert len(voted) * 3 > len(addresses) * 2, h
            prevoters |= voted
            precommitted = {
                v.validator_address for v in seen if v.height == h and v.type == p.PRECOMMIT and v.round == commit.round
            }
            # The precommits the chain recorded reached Redis; one that reached the observer node
            # only after it moved two heights on is never emitted by CometBFT: a quorum at least.
            signers = {s.validator_address for s in commit.signatures if s.flag == p.FLAG_COMMIT}
            assert len(signers & precommitted) * 3 > len(addresses) * 2, h
        assert prevoters == addresses
        assert worker.connected_url == localnet.nodes[0].rpc_url

        # The node ctop is connected to dies (kill -9): failover to the next endpoint at once, then back.
        request.addfinalizer(lambda: localnet.start_node(0))  # never leave it stopped for later tests
        killed = time.monotonic()
        localnet.stop_node(0, kill=True)
        wait_until(
            lambda: worker.connected_url == localnet.nodes[1].rpc_url and worker.first_event_at > killed,
            timeout=60,
            message="failover",
        )
        switch = worker.first_event_at - killed
        print(f"failover: first event from the second endpoint {switch:.2f}s after the watched node was killed")
        assert switch < 3.0
        switched_at = worker.last_height
        wait_until(lambda: worker.last_height >= switched_at + 6, timeout=60, message="heights after failover")
        localnet.start_node(0)
        wait_until(lambda: worker.connected_url == localnet.nodes[0].rpc_url, timeout=90, message="failback")
        assert worker.counters.reconnects >= 2
    after = sorted({v.height for v in votes(redis_client)})
    gaps = entries_of_kind(redis_client, "localnet", KIND_GAP)
    unknown = {h for g in gaps for h in range(g["from"], g["to"] + 1)}
    # Every height from the first to the last is either observed or recorded as a gap.
    assert set(range(after[0], after[-1] + 1)) <= set(after) | unknown
    # While val0 was down, its votes are absent and the other three keep voting. (Its RPC stops before
    # its consensus does, so it may still vote a height or two after ctop failed over.)
    down = [v for v in votes(redis_client) if switched_at + 3 <= v.height <= switched_at + 5]
    assert {v.validator_address for v in down} == addresses - {localnet.nodes[0].address}
