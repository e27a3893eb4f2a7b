"""index_validators against the simulator: paginated sets, exact change heights, failed reads."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from consensus.models import Chain, Endpoint
from consensus.simulator import Scenario, SetChange, SimChain, SimulatorThread
from validators.indexer import ChainIndexer, IndexerError
from validators.models import SetIndexState, SetMembership
from validators.selectors import active_set, set_changes

from .simhelpers import wait_for_height


@pytest.fixture
def sim():
    s = SimulatorThread()
    yield s
    s.stop()


def watched(sim, chain: SimChain, nodes: int = 1) -> tuple[Chain, list]:
    sim_nodes = sim.add_chain(chain, nodes=nodes)
    sim.start()
    c = Chain.objects.create(name=chain.chain_id, chain_id=chain.chain_id)
    for i, node in enumerate(sim_nodes):
        Endpoint.objects.create(chain=c, url=node.url, priority=i)
    return c, sim_nodes


def recorded(chain: Chain, height: int) -> list[tuple[str, int, int]]:
    return [(m.validator.address, m.voting_power, m.position) for m in active_set(chain.pk, height)]


def expected(sim_chain: SimChain, height: int) -> list[tuple[str, int, int]]:
    return [(v.address, v.power, i) for i, v in enumerate(sim_chain.validator_set(height))]


def diff(sim_chain: SimChain, h: int) -> str:
    """+joined -left ~changed (power or position) between the simulator's sets at h-1 and h."""
    before = {a: (p, i) for a, p, i in expected(sim_chain, h - 1)}
    after = {a: (p, i) for a, p, i in expected(sim_chain, h)}
    changed = sum(1 for a in before.keys() & after.keys() if before[a] != after[a])
    return f"+{len(after.keys() - before.keys())} -{len(before.keys() - after.keys())} ~{changed}"


@pytest.mark.django_db
@pytest.mark.parametrize("n", [1, 100, 101, 500])
def test_paginated_sets_are_recorded_whole(sim, n):
    powers = [1000 + (i % 7) * 10 for i in range(n)]
    sim_chain = SimChain("sim-1", validators=powers, block_time=0.2)
    chain, (node,) = watched(sim, sim_chain)
    wait_for_height(node.url, 2)
    result = ChainIndexer(chain).run_once()
    assert recorded(chain, result.height) == expected(sim_chain, result.height)
    assert SetMembership.objects.filter(chain=chain).count() == n
    # Pubkeys are kept and match the addresses (CometBFT's derivation, checked by the indexer).
    v = active_set(chain.pk, result.height).first().validator
    assert v.pub_key and v.pub_key_type == "tendermint/PubKeyEd25519"
    # A second pass with nothing changed writes nothing.
    ChainIndexer(chain).run_once()
    assert SetMembership.objects.filter(chain=chain).count() == n


@pytest.mark.django_db
def test_changes_between_polls_are_found_at_their_exact_heights(sim):
    changes = [
        SetChange(height=7, validator=4, power=5000),
        SetChange(height=11, validator=0, power=0),
        SetChange(height=11, validator=2, power=1500),
    ]
    sim_chain = SimChain("sim-1", validators=4, block_time=0.1, scenario=Scenario(set_changes=changes))
    chain, (node,) = watched(sim, sim_chain)
    wait_for_height(node.url, 3)
    first = ChainIndexer(chain).run_once()
    assert first.height < 7
    wait_for_height(node.url, 14)
    result = ChainIndexer(chain).run_once()
    assert [h for h, _ in result.changes] == [7, 11]
    assert [str(d) for _, d in result.changes] == [diff(sim_chain, 7), diff(sim_chain, 11)]
    assert result.exact
    for h in range(first.height, result.height + 1):  # every height between the polls is right
        assert recorded(chain, h) == expected(sim_chain, h), h
    kinds = {(c.height, c.kind) for c in set_changes(chain.pk, first.height, result.height)}
    assert (7, "joined") in kinds and (11, "left") in kinds and (11, "changed") in kinds
    assert SetIndexState.objects.get(chain=chain).verified_height == result.height


@pytest.mark.django_db
def test_a_failing_page_changes_nothing(sim):
    sim_chain = SimChain(
        "sim-1",
        validators=150,
        block_time=0.1,
        scenario=Scenario(set_changes=[SetChange(height=6, validator=0, power=0)]),
    )
    chain, (node,) = watched(sim, sim_chain)
    wait_for_height(node.url, 2)
    ChainIndexer(chain).run_once()
    before = list(SetMembership.objects.order_by("id").values_list("id", "heights", "voting_power"))
    wait_for_height(node.url, 8)
    node.fail_validators_page = 2
    with pytest.raises(IndexerError, match="simulated failure"):
        ChainIndexer(chain).run_once()
    assert list(SetMembership.objects.order_by("id").values_list("id", "heights", "voting_power")) == before
    assert "simulated failure" in SetIndexState.objects.get(chain=chain).last_error
    node.fail_validators_page = None
    result = ChainIndexer(chain).run_once()
    assert [h for h, _ in result.changes] == [6]


@pytest.mark.django_db
def test_wrong_chain_endpoint_is_refused_and_the_next_used(sim):
    right = SimChain("sim-1", validators=3, block_time=0.1)
    wrong = SimChain("other-1", validators=5, block_time=0.1)
    (impostor,) = sim.add_chain(wrong)
    (good,) = sim.add_chain(right)
    sim.start()
    chain = Chain.objects.create(name="sim-1", chain_id="sim-1")
    Endpoint.objects.create(chain=chain, url=impostor.url, priority=0)
    Endpoint.objects.create(chain=chain, url=good.url, priority=1)
    wait_for_height(good.url, 2)
    result = ChainIndexer(chain).run_once()
    assert recorded(chain, result.height) == expected(right, result.height)


@pytest.mark.django_db(transaction=True)  # the pass runs in the indexer's own thread
def test_command_once_and_bad_durations(sim):
    sim_chain = SimChain("sim-1", validators=4, block_time=0.1)
    chain, (node,) = watched(sim, sim_chain)
    wait_for_height(node.url, 2)
    call_command("index_validators", "--networks", "sim-1", "--once", "--poll-frequency", "5m")
    assert SetMembership.objects.filter(chain=chain).count() == 4
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="invalid duration"):
        call_command("index_validators", "--poll-frequency", "often")
