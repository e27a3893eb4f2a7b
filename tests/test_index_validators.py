"""index_validators against the simulator: paginated sets, exact change heights, failed reads."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from consensus.models import Chain, Endpoint
from consensus.simulator import Scenario, SetChange, SimChain
from validators.indexer import ChainIndexer, IndexerError
from validators.models import SetIndexState, SetMembership
from validators.selectors import active_set, set_changes

from .simhelpers import wait_for_height, watched


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


def validators_page(height: int, items: list[tuple[str, bytes]], total: int) -> tuple[str, bytes]:
    """A /validators reply: `items` of (address, raw ed25519 key)."""
    import base64

    from consensus.protocol import encode
    from consensus.protocol.values import ValidatorInfo

    infos = [ValidatorInfo(a, "tendermint/PubKeyEd25519", base64.b64encode(k).decode(), 10, 0) for a, k in items]
    return "200 OK", encode.validators_reply(height, infos, total).encode()


def keys(n: int, salt: str = "") -> list[tuple[str, bytes]]:
    import hashlib

    out = []
    for i in range(n):
        key = hashlib.sha256(f"{salt}key{i}".encode()).digest()
        out.append((hashlib.sha256(key).digest()[:20].hex().upper(), key))
    return out


@pytest.fixture
def hostile_chain(db):
    from .hostile import HostileNode

    node = HostileNode(chain_id="h-1").start()
    node.status_height = lambda: 100
    chain = Chain.objects.create(name="h", chain_id="h-1")
    Endpoint.objects.create(chain=chain, url=node.url)
    yield chain, node
    node.stop()


@pytest.mark.django_db
def test_a_public_key_that_does_not_match_its_address_is_refused(hostile_chain):
    chain, node = hostile_chain
    forged = [(keys(1, "a")[0][0], keys(1, "b")[0][1])]  # one validator's address, another's key
    good = keys(1, "a")
    # Forged only at the height in progress: refused there, not quietly read at the latest height.
    node.handlers["/validators"] = lambda q: validators_page(asked(q), forged if asked(q) == 101 else good, 1)
    with pytest.raises(IndexerError, match="reports a public key whose address is"):
        ChainIndexer(chain).run_once()
    assert not SetMembership.objects.exists()


def asked(query: dict[str, str]) -> int:
    """The height a /validators request asks for (the hostile node's latest, 100, by default)."""
    return int(query.get("height", "100").strip('"'))


@pytest.mark.django_db
def test_the_set_of_the_height_in_progress_is_read_and_an_older_node_is_asked_for_its_latest(hostile_chain):
    """The set of height latest+1 is fixed once latest committed, and a current node serves it: the
    analyzer then finds the set of a new height already recorded. A node that refuses that height
    (its own error reply) is asked for its latest instead; anything else is not a reason to."""
    from consensus.protocol import encode

    chain, node = hostile_chain
    members = keys(4, "progress")
    node.handlers["/validators"] = lambda q: validators_page(asked(q), members, 4)
    assert ChainIndexer(chain).run_once().height == 101
    assert recorded(chain, 101) == [(a, 10, i) for i, (a, _) in enumerate(members)]

    older = Chain.objects.create(name="older", chain_id="h-1")
    Endpoint.objects.create(chain=older, url=node.url)

    def refusing(q: dict[str, str]) -> tuple[str, bytes]:
        if asked(q) > 100:
            body = encode.http_error(
                f"height {asked(q)} must be less than or equal to the current blockchain height 100"
            )
            return "500 Internal Server Error", body.encode()
        return validators_page(asked(q), members, 4)

    node.handlers["/validators"] = refusing
    assert ChainIndexer(older).run_once().height == 100
    assert recorded(older, 100) == [(a, 10, i) for i, (a, _) in enumerate(members)]


@pytest.mark.django_db
def test_a_set_that_changes_while_paging_changes_nothing(hostile_chain):
    chain, node = hostile_chain
    before, after = keys(150, "before"), keys(150, "after")

    def paging(query: dict[str, str]) -> tuple[str, bytes]:
        page = int(query.get("page", "1"))
        # Page 2 comes from a newer height with a different set: the read cannot be trusted.
        if page == 1:
            return validators_page(asked(query), before[:100], 150)
        return validators_page(asked(query) + 1, after[100:], 150)

    node.handlers["/validators"] = paging
    with pytest.raises(IndexerError, match="page 2 at height 101 is inconsistent with page 1"):
        ChainIndexer(chain).run_once()
    assert not SetMembership.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db
def test_a_set_of_10000_validators_the_cap_is_read_whole(hostile_chain):
    chain, node = hostile_chain
    members = sorted(keys(10_000, "big"))  # equal power: ordered by address, as CometBFT does

    def paging(query: dict[str, str]) -> tuple[str, bytes]:
        page, per_page = int(query.get("page", "1")), int(query.get("per_page", "30"))
        return validators_page(asked(query), members[(page - 1) * per_page : page * per_page], len(members))

    node.handlers["/validators"] = paging
    result = ChainIndexer(chain).run_once()
    assert result.height == 101 and SetMembership.objects.filter(chain=chain).count() == 10_000
    assert [m.validator.address for m in active_set(chain.pk, 101)] == [a for a, _ in members]


@pytest.mark.django_db(transaction=True)
def test_once_exits_1_when_a_chain_could_not_be_indexed(hostile_chain):
    from .procs import run

    _, node = hostile_chain
    node.handlers["/validators"] = lambda q: ("500 Internal Server Error", b"{}")
    proc = run("index_validators", "--once", timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "1 chain(s) could not be indexed" in proc.stderr and "Traceback" not in proc.stderr
