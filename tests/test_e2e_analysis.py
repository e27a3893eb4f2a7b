"""The whole analysis on a real 4-validator CometBFT localnet: websocket -> Redis -> PostgreSQL ->
verdicts -> alerts, while validators are stopped and started for real."""

from __future__ import annotations

import json
import urllib.request

import pytest

from analysis import blocks, chainstatus, latency
from analysis.models import Alert, AlertKind, AlertSettings, HeightHistory, HeightVerdict, ValidatorVerdict
from analysis.runner import MissingVoteAnalyzer
from consensus.ingest import StreamConsumer
from consensus.models import Block, Chain, Endpoint
from consensus.protocol.keys import bech32_address
from consensus.rpc import RPCClient
from consensus.subscriber import ChainTarget
from validators.indexer import ChainIndexer
from validators.models import ValidatorStatus
from validators.status import refresh_status

from .subscriberhelpers import running, wait_until

pytestmark = [pytest.mark.localnet, pytest.mark.analysis_truth, pytest.mark.slow]


def open_alerts(chain, *kinds):
    return list(Alert.objects.filter(chain=chain, is_open=True, kind__in=kinds).select_related("validator"))


def measure_latency_and_blocks(chain, localnet, after) -> None:
    """Vote latency and block metas on a real network with no injected delay: every vote ctop timed
    arrived within one block time of its round's proposal (plausibility, the figures are printed
    for the record), and the blocks ctop fetched are the chain's own (its /block says the same),
    all empty (nobody sends transactions here), so no empty-blocks alert: the chain is quiet."""
    wait_until(after(lambda: Block.objects.filter(chain=chain).count() >= 6), timeout=90, message="block metas")
    block_time = blocks.chain_blocks(chain.pk, 50).block_time_s
    assert block_time is not None and 0.5 < block_time < 5, block_time
    delays = []
    for packed in HeightHistory.objects.filter(chain=chain, delays__isnull=False).values_list("delays", flat=True):
        delays += [d * latency.UNIT_MS for d in latency.unpack_delays(bytes(packed)) if d != latency.NO_DELAY]
    assert len(delays) >= 6 * 4, len(delays)
    assert all(-1000 * block_time < d < 1000 * block_time for d in delays), (block_time, sorted(delays)[-5:])
    stats = latency.chain_latency(chain.pk, 50)
    assert len(stats.validators) == 4
    print(
        f"\nlocalnet: block time {block_time:.3f} s; {len(delays)} votes timed, min {min(delays)} ms,"
        f" max {max(delays)} ms; per validator p50/p95/after quorum: "
        + ", ".join(f"{v.p50_ms:.0f}/{v.p95_ms:.0f} ms/{100 * v.after_quorum:.0f}%" for v in stats.validators.values())
    )
    rpc = RPCClient(localnet.nodes[1].rpc_url)
    for b in Block.objects.filter(chain=chain).select_related("proposer")[:10]:
        real = rpc.block(b.height)
        assert (b.proposer.address, b.time, b.txs) == (real.proposer_address, real.time, 0)
    assert not open_alerts(chain, AlertKind.EMPTY_BLOCKS)


def chain_counter_follows_the_outage(chain, localnet, validator, after) -> None:
    """The chain's own word on the outage: its slashing module's missed-blocks counter, read by
    ctop through the node's REST API, counts the heights the stopped validator missed, and ctop's
    own count of missed commit signatures over the same window agrees with it (within the heights
    around the stop and the restart, where a vote can reach ctop's node and miss the commit or the
    reverse). The jail-risk figure is that counter against the chain's allowance."""
    chain.rest_url = localnet.nodes[1].rest_url
    chain.save()
    refresh_status(chain)
    with urllib.request.urlopen(f"{chain.rest_url}/cosmos/slashing/v1beta1/signing_infos", timeout=5) as r:  # noqa: S310
        infos = {bech32_address(i["address"]): int(i["missed_blocks_counter"]) for i in json.load(r)["info"]}
    status = ValidatorStatus.objects.get(validator=validator)
    assert status.missed_blocks_counter == infos[validator.address] >= 3
    assert (status.bond_status, status.jailed) == ("bonded", False)  # the localnet's window never jails
    latest = HeightVerdict.objects.filter(chain=chain).order_by("-height").values_list("height", flat=True)[0]
    risk = chainstatus.jail_risks(chain, [validator.pk], latest)[validator.pk]
    print(
        f"chain's missed-blocks counter {risk.counter} of {risk.allowance} allowed; ctop counted {risk.ctop_missed}"
        f" missed commit signatures in the {risk.ctop_heights} heights it judged"
    )
    assert risk.counter == status.missed_blocks_counter and risk.allowance == 50_000
    assert abs(risk.ctop_missed - risk.counter) <= 2


@pytest.mark.django_db(transaction=True)
def test_a_stopped_validator_is_alerted_then_resolved_and_a_halt_is_alerted(localnet, redis_client, request):
    chain = Chain.objects.create(name="localnet", chain_id="injective-777")
    for i in (0, 1):
        Endpoint.objects.create(chain=chain, url=localnet.nodes[i].rpc_url, priority=i)
    AlertSettings.objects.create(
        chain=chain,
        grace_seconds=1,
        resolve_after=3,
        halt_after_seconds=8,
        stall_after_seconds=20,
        cooldown_seconds=10,
    )
    ChainIndexer(chain).run_once()
    consumer = StreamConsumer([chain], client=redis_client, consumer="e2e", block_ms=50)
    consumer.ensure_groups()
    analyzer = MissingVoteAnalyzer([chain], commit_wait=15)

    def tick() -> None:
        while consumer.run_once():
            pass
        analyzer.run_once()

    def judged() -> int:
        return HeightVerdict.objects.filter(chain=chain).count()

    def after(predicate):
        return lambda: tick() or predicate()

    target = ChainTarget("localnet", "injective-777", [(localnet.nodes[0].rpc_url, 0), (localnet.nodes[1].rpc_url, 1)])
    with running([target], redis_client):
        # 1. All four validators up: heights are judged and nobody is blamed.
        wait_until(after(lambda: judged() >= 6), timeout=90, interval=0.3, message="6 judged heights")
        assert not open_alerts(chain, AlertKind.MISSED_VOTES, AlertKind.HALT_RISK, AlertKind.STALLED)
        assert not ValidatorVerdict.objects.filter(chain=chain, missed=True).exists()
        measure_latency_and_blocks(chain, localnet, after)

        # 2. The watched node dies with its validator (kill -9): ctop fails over to the second
        # endpoint, the heights of the switch are judged from the chain's commit, and a
        # missed-votes alert names exactly it, within two heights (and a tick) of its first miss.
        request.addfinalizer(lambda: [localnet.start_node(i) for i in (0, 2, 3)])  # later tests need them
        quiet = localnet.nodes[0].address
        stopped_after = localnet.height(1)
        localnet.stop_node(0, kill=True)
        alerts = wait_until(
            after(lambda: open_alerts(chain, AlertKind.MISSED_VOTES)), timeout=60, interval=0.3, message="an alert"
        )
        assert [a.validator.address for a in alerts] == [quiet]
        heights = alerts[0].details["heights"]
        assert heights and min(heights) >= stopped_after
        for v in ValidatorVerdict.objects.filter(chain=chain, height__in=heights, validator=alerts[0].validator):
            assert "M" in v.precommits, (v.height, v.prevotes, v.precommits)
        assert alerts[0].details["scope"] == "solo"
        blamed = set(ValidatorVerdict.objects.filter(chain=chain, missed=True).values_list("validator__address"))
        assert blamed == {(quiet,)}
        first_miss = min(heights)
        rpc = RPCClient(localnet.nodes[1].rpc_url)
        ended = rpc.block(first_miss + 1).time  # the first missed height ended when the next began
        block_time = (rpc.block(first_miss).time - rpc.block(first_miss - 5).time).total_seconds() / 5
        delay = (alerts[0].opened_at - ended).total_seconds()
        # A missed precommit is settled by the canonical commit: that of the second missed height
        # is in block first_miss+2, there once that block is committed (first_miss+3's block time).
        # What follows is ctop's own delay (ticks, look-ups, the failover).
        wait_until(lambda: localnet.height(1) >= first_miss + 3, timeout=30, interval=0.3, message="3 more heights")
        knowable = rpc.block(first_miss + 3).time
        own = (alerts[0].opened_at - knowable).total_seconds()
        from_commit = HeightVerdict.objects.filter(chain=chain, height__in=heights, from_commit=True).count()
        print(
            f"alert {delay:.1f}s after the first missed height {first_miss} ended ({delay / block_time:.1f} blocks "
            f"of {block_time:.2f}s), {own:.1f}s after the chain could tell; {from_commit} of its missed heights "
            "judged from the chain's commit"
        )
        # A tick (0.3 s here) and the look-up round trips; slack for a busy 2-core machine.
        assert own <= 2.0

        # 3. It comes back: the alert resolves once it has signed `resolve_after` heights in a row.
        localnet.start_node(0)
        wait_until(
            after(lambda: not open_alerts(chain, AlertKind.MISSED_VOTES)), timeout=120, interval=0.3, message="resolve"
        )
        resolved = Alert.objects.get(pk=alerts[0].pk)
        assert resolved.resolved_at is not None and "signed the last 3 heights" in resolved.details["resolution"]
        chain_counter_follows_the_outage(chain, localnet, alerts[0].validator, after)

        # 4. Two of four stop: half the power is gone, the chain halts; ctop says so.
        localnet.stop_node(2)
        localnet.stop_node(3)
        halt = wait_until(
            after(lambda: open_alerts(chain, AlertKind.HALT_RISK)), timeout=60, interval=0.3, message="halt risk"
        )
        assert halt[0].details["live"] is True
        stalled = wait_until(
            after(lambda: open_alerts(chain, AlertKind.STALLED)), timeout=60, interval=0.5, message="stalled"
        )
        assert stalled[0].last_height == halt[0].last_height
        localnet.start_node(2)
        localnet.start_node(3)
        wait_until(
            after(lambda: not open_alerts(chain, AlertKind.STALLED)), timeout=120, interval=0.5, message="recovery"
        )
