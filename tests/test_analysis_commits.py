"""The analyzer's cross-check of missing precommits against a node's /commit (on the simulator)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from analysis.models import HeightVerdict, ValidatorVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus import protocol as p
from consensus.models import Chain, CommitSignature, Endpoint, Round, Vote, VoteType
from consensus.simulator import Halt, Scenario, SimChain, SimulatorThread
from validators.indexer import ChainIndexer
from validators.models import Validator

from .simhelpers import wait_for_height

OLD = timezone.now() - timedelta(minutes=5)


@pytest.fixture
def sim():
    s = SimulatorThread()
    yield s
    s.stop()


def watched(sim, sim_chain: SimChain) -> tuple[Chain, str]:
    (node,) = sim.add_chain(sim_chain)
    sim.start()
    chain = Chain.objects.create(name=sim_chain.chain_id, chain_id=sim_chain.chain_id)
    Endpoint.objects.create(chain=chain, url=node.url, priority=0)
    return chain, node.url


def store_commit_as_events(chain: Chain, url: str, height: int, *, drop: str = "") -> None:
    """Store the votes of `height` as if the node had relayed them, except `drop`'s (never relayed)."""
    commit = p.decode_commit(requests.get(f"{url}/commit", params={"height": height}, timeout=5).text)
    Round.objects.get_or_create(chain=chain, height=height, round=commit.round, defaults={"started_at": OLD})
    for index, sig in enumerate(commit.signatures):
        if not sig.validator_address or sig.validator_address == drop:
            continue
        validator, _ = Validator.objects.get_or_create(chain=chain, address=sig.validator_address)
        for vote_type in (VoteType.PREVOTE, VoteType.PRECOMMIT):
            Vote.objects.create(
                chain=chain,
                height=height,
                round=commit.round,
                type=vote_type,
                validator=validator,
                validator_index=index,
                block_hash=commit.block_hash if sig.flag == p.FLAG_COMMIT else None,
                timestamp=OLD,
                received_at=OLD,
            )


def verdict(chain: Chain, height: int, address: str) -> tuple[str, str]:
    v = ValidatorVerdict.objects.get(chain=chain, height=height, validator__address=address)
    return v.prevotes, v.precommits


@pytest.mark.django_db
def test_a_precommit_the_node_never_relayed_is_found_in_the_canonical_commit(sim):
    sim_chain = SimChain("sim-1", validators=4, block_time=0.2)
    chain, url = watched(sim, sim_chain)
    wait_for_height(url, 3)
    first = ChainIndexer(chain).run_once().height
    wait_for_height(url, first + 4)  # first+2 committed: the commit of first+1 is canonical
    h = first + 1
    quiet = sim_chain.validator_set(h)[1].address
    Round.objects.create(chain=chain, height=h - 1, round=0, started_at=OLD)  # the first height seen is partial
    store_commit_as_events(chain, url, h, drop=quiet)
    Round.objects.create(chain=chain, height=h + 1, round=0, started_at=OLD)
    assert MissingVoteAnalyzer([chain], lookup_workers=0).settle() == 1
    # The chain counted its precommit; its prevote was simply never relayed: late, not missed.
    assert verdict(chain, h, quiet) == ("L", "S")
    assert HeightVerdict.objects.get(chain=chain, height=h).missed_validators == 0
    assert CommitSignature.objects.filter(chain=chain, height=h).count() == 4


@pytest.mark.django_db
def test_a_seen_commit_is_waited_for_then_judged_without_it(sim):
    # Two of four validators stop at height 4 and never come back within the test: 3 is the last
    # committed height, and the node's commit of 3 stays its non-canonical "seen" commit.
    scenario = Scenario(halts=[Halt(height=4, seconds=600, offline=(2, 3))])
    sim_chain = SimChain("sim-2", validators=4, block_time=0.2, scenario=scenario)
    chain, url = watched(sim, sim_chain)
    wait_for_height(url, 3)
    assert ChainIndexer(chain).run_once().height == 3
    quiet = sim_chain.validator_set(3)[0].address
    Round.objects.create(chain=chain, height=2, round=0, started_at=OLD)  # the first height seen is partial
    store_commit_as_events(chain, url, 3, drop=quiet)
    Round.objects.create(chain=chain, height=4, round=0, started_at=timezone.now() - timedelta(seconds=10))
    analyzer = MissingVoteAnalyzer([chain], commit_wait=30, lookup_workers=0)
    assert analyzer.settle() == 0  # height 4 might still commit and bring the canonical commit
    assert not CommitSignature.objects.filter(chain=chain).exists()
    Round.objects.filter(chain=chain, height=4).update(started_at=OLD)  # a halt: judge with what was seen
    assert analyzer.settle() == 1
    assert verdict(chain, 3, quiet) == ("M", "M")
    assert not CommitSignature.objects.filter(chain=chain).exists()  # a seen commit is never stored
