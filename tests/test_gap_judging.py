"""Heights ctop did not see are judged from the chain's own commit: a validator that stopped while
ctop was not listening is still seen missing, counted by the alert, and shown as such."""

from __future__ import annotations

import pytest

from analysis.models import Alert, AlertKind, AlertSettings, HeightVerdict, ValidatorVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus.ingest import StreamConsumer
from consensus.models import Chain, Endpoint
from consensus.protocol.stream import KIND_GAP
from consensus.simulator import Scenario, SimChain, Window
from validators.indexer import ChainIndexer

from .subscriberhelpers import entries_of_kind, running, target, wait_until

OFF_FROM = 30  # validator 2 stops here, while ctop is not listening


@pytest.mark.django_db
def test_gap_heights_are_judged_from_the_commit_and_counted_by_the_alert(sim, redis_client, user_client):
    scenario = Scenario(offline=[Window(validator=2, start=OFF_FROM, end=10**6)])
    sim_chain = SimChain("sim-1", validators=4, block_time=0.15, scenario=scenario)
    (node,) = sim.add_chain(sim_chain)
    sim.start()
    chain = Chain.objects.create(name="sim-1", chain_id="sim-1")
    Endpoint.objects.create(chain=chain, url=node.url)
    AlertSettings.objects.create(chain=chain, grace_seconds=0)
    wait_until(lambda: sim_chain.latest_height >= 2, message="the chain started")
    ChainIndexer(chain).run_once()  # the set's history starts before everything that follows
    with running([target("sim-1", node)], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.last_height and worker.last_height >= OFF_FROM - 6, message="watching")
        # ctop stops listening before the validator stops, and starts again well after.
        sim.call(lambda: setattr(node, "accepting", False))
        sim.call(node.drop_connections())
        wait_until(lambda: sim_chain.latest_height >= OFF_FROM + 6, message="heights pass unseen")
        sim.call(lambda: setattr(node, "accepting", True))
        gap = wait_until(
            lambda: next(
                (
                    g
                    for g in entries_of_kind(redis_client, "sim-1", KIND_GAP)
                    if g.get("backfilled") and "not listening" in g["reason"]
                ),
                None,
            ),
            message="the gap, backfilled",
        )
        wait_until(lambda: worker.last_height >= gap["to"] + 4, message="heights after the gap")
    assert gap["from"] < OFF_FROM < gap["to"]
    StreamConsumer([chain], client=redis_client, consumer="t", block_ms=50).run(idle_exit=True, pipelined=False)
    analyzer = MissingVoteAnalyzer([chain], lookup_workers=0, backlog=500)
    analyzer.settle()
    judged_from_commit = set(
        HeightVerdict.objects.filter(chain=chain, from_commit=True).values_list("height", flat=True)
    )
    unseen = set(range(gap["from"] + 1, gap["to"]))  # the gap's ends may have been seen in part
    assert unseen and unseen <= judged_from_commit
    quiet = (
        ValidatorVerdict.objects.filter(chain=chain, height=OFF_FROM + 1, missed=True)
        .values_list("validator__address", flat=True)
        .get()
    )
    for h in sorted(unseen):
        v = ValidatorVerdict.objects.get(chain=chain, height=h, validator__address=quiet)
        assert set(v.prevotes) == {"U"}  # nothing seen of its prevotes
        assert v.precommits.endswith("M" if h >= OFF_FROM else "S"), (h, v.precommits)
        others = ValidatorVerdict.objects.filter(chain=chain, height=h).exclude(validator__address=quiet)
        assert all(o.precommits.endswith("S") and not o.missed for o in others), h
    alert = Alert.objects.get(chain=chain, kind=AlertKind.MISSED_VOTES, is_open=True)
    assert alert.validator.address == quiet
    assert OFF_FROM in alert.details["heights"]  # its first miss, seen only in the chain's commit
    # The pages say which heights were judged from the chain's commit.
    grid = user_client.get("/chains/sim-1/heights/?count=200").content.decode()
    assert "from the chain&#x27;s commit" in grid and 'class="c-M fc"' in grid
    page = user_client.get(f"/chains/sim-1/validators/{quiet}/").content.decode()
    assert "from the chain&#x27;s commit" in page or "from the chain's commit" in page


@pytest.mark.django_db
def test_the_analyzer_waits_for_a_gap_backfill_under_way_before_moving_past_it(net):
    from django.utils import timezone

    from consensus.models import CommitSignature, Gap

    from .analysishelpers import A, B, C, D, all_sign, play

    for h in (10, 11, 15, 16, 17):
        play(net, h, all_sign())
    now = timezone.now()
    gap = Gap.objects.create(chain=net, from_height=12, to_height=14, reason="not listening", detected_at=now)
    analyzer = MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False)
    analyzer.run_once()
    assert set(HeightVerdict.objects.values_list("height", flat=True)) == {11}  # 15-16 wait for 12-14
    # The backfill lands: the chain's commits of 12-14 (D absent), and the gap is marked backfilled.
    for h in (12, 13, 14):
        for i, address in enumerate((A, B, C, D)):
            CommitSignature.objects.create(
                chain=net, height=h, round=0, validator_index=i, flag=1 if address == D else 2, validator=None
            )
    Gap.objects.filter(pk=gap.pk).update(backfilled_at=timezone.now())
    analyzer.run_once()
    assert set(HeightVerdict.objects.values_list("height", flat=True)) == {11, 12, 13, 14, 15, 16}
    missed = ValidatorVerdict.objects.filter(chain=net, missed=True).values_list("height", "validator__address")
    assert sorted(missed) == [(12, D), (13, D), (14, D)]  # counted, though D signs again from 15
