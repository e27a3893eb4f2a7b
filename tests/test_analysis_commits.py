"""The analyzer's cross-check of missing precommits against a node's /commit (on the simulator)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from analysis.lookups import CommitLookup
from analysis.models import HeightVerdict, ValidatorVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus import protocol as p
from consensus.models import Chain, CommitSignature, Round, RoundStep, Step, Validator, Vote, VoteType
from consensus.simulator import Halt, Scenario, SimChain
from validators.indexer import ChainIndexer

from .simhelpers import wait_for_height, watched

OLD = timezone.now() - timedelta(minutes=5)


def store_commit_as_events(chain: Chain, url: str, height: int, *, drop: str = "") -> None:
    """Store the votes of `height` as if the node had relayed them, except `drop`'s (never relayed)."""
    commit = p.decode_commit(requests.get(f"{url}/commit", params={"height": height}, timeout=5).text)
    Round.objects.get_or_create(chain=chain, height=height, round=commit.round, defaults={"started_at": OLD})
    for sig in commit.signatures:
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
    chain, (node,) = watched(sim, sim_chain)
    url = node.url
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


HALT_AT = 15  # two of four validators stop here: about 3 s into a chain of 0.2 s blocks


def indexed_until_the_halt(chain, url: str) -> int:
    """The set indexed from early on, then up to the halt; returns the last committed height (its
    commit stays the node's non-canonical "seen" commit while the chain is halted)."""
    wait_for_height(url, 3)
    first = ChainIndexer(chain).run_once().height  # the set of the height in progress
    h = HALT_AT - 1
    assert first < h, f"the chain reached {first} before it was first indexed"
    wait_for_height(url, h)
    ChainIndexer(chain).run_once()
    return h


@pytest.mark.django_db
def test_a_seen_commit_is_waited_for_then_judged_without_it(sim):
    # Two of four validators stop two heights after the first recorded set and never come back
    # within the test: h is the last committed height, and the node's commit of h stays its
    # non-canonical "seen" commit.
    scenario = Scenario(halts=[Halt(height=HALT_AT, seconds=600, offline=(2, 3))])
    sim_chain = SimChain("sim-2", validators=4, block_time=0.2, scenario=scenario)
    chain, (node,) = watched(sim, sim_chain)
    url = node.url
    h = indexed_until_the_halt(chain, url)
    quiet = sim_chain.validator_set(h)[0].address
    Round.objects.create(chain=chain, height=h - 1, round=0, started_at=OLD)  # the first height seen is partial
    store_commit_as_events(chain, url, h, drop=quiet)
    Round.objects.create(chain=chain, height=h + 1, round=0, started_at=timezone.now() - timedelta(seconds=10))
    analyzer = MissingVoteAnalyzer([chain], commit_wait=30, lookup_workers=0)
    assert analyzer.settle() == 0  # h+1 might still commit and bring the canonical commit
    assert not CommitSignature.objects.filter(chain=chain).exists()
    Round.objects.filter(chain=chain, height=h + 1).update(started_at=OLD)  # a halt: judge with what was seen
    assert analyzer.settle() == 1
    assert verdict(chain, h, quiet) == ("M", "M")
    assert not CommitSignature.objects.filter(chain=chain).exists()  # a seen commit is never stored


@pytest.mark.django_db
def test_a_height_not_canonical_yet_is_asked_again_once_ctop_sees_the_next_height_committed(sim, monkeypatch):
    monkeypatch.setattr("analysis.runner.NOT_YET_BACKOFF", 600.0)  # so only what ctop saw can trigger it
    monkeypatch.setattr("analysis.runner.NOT_YET_SOON", 0.0)
    scenario = Scenario(halts=[Halt(height=HALT_AT, seconds=600, offline=(2, 3))])
    sim_chain = SimChain("sim-3", validators=4, block_time=0.2, scenario=scenario)
    chain, (node,) = watched(sim, sim_chain)
    h = indexed_until_the_halt(chain, node.url)
    quiet = sim_chain.validator_set(h)[0].address
    Round.objects.create(chain=chain, height=h - 1, round=0, started_at=OLD)
    store_commit_as_events(chain, node.url, h, drop=quiet)
    Round.objects.create(chain=chain, height=h + 1, round=0, started_at=timezone.now())
    analyzer = MissingVoteAnalyzer([chain], commit_wait=600, lookup_workers=0)
    assert analyzer.settle() == 0  # asked for h's commit (and h's set); the answer: not canonical yet
    assert analyzer.lookups.commit(chain, h, take=False) is CommitLookup.NOT_YET
    asked = analyzer.lookups.asked
    for _ in range(3):
        analyzer.run_once()
    assert analyzer.lookups.asked == asked  # h+1 is not committed as far as ctop knows: not asked again
    # h+1 reaches its Commit step (as far as ctop knows: the simulated chain stays halted).
    RoundStep.objects.create(chain=chain, height=h + 1, round=0, step=Step.COMMIT, seen_at=timezone.now())
    analyzer.run_once()
    assert analyzer.lookups.asked == asked + 1
    analyzer.lookups.wait(10)
    analyzer.run_once()  # the answer: still not canonical (the node never committed h+1)
    assert analyzer.lookups.asked == asked + 2
    RoundStep.objects.all().delete()
    analyzer.lookups.wait(10)
    analyzer.run_once()
    assert analyzer.lookups.asked == asked + 2
    Round.objects.create(chain=chain, height=h + 2, round=0, started_at=timezone.now())  # or h+2 starts
    analyzer.run_once()
    assert analyzer.lookups.asked == asked + 3
