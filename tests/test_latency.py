"""Vote latency (analysis.latency): arrival delays from the round's proposal, the quorum margin,
and their 2-bytes-a-vote form in the history tier."""

from __future__ import annotations

from datetime import timedelta

import pytest

from analysis import latency
from analysis.models import HeightHistory
from analysis.runner import MissingVoteAnalyzer
from consensus.models import Endpoint, Round, Validator, Vote, VoteType

from .analysishelpers import OLD, A, B, C, D, all_sign, play

MS = timedelta(milliseconds=1)


def test_quorum_margin_on_a_hand_built_round():
    # Four validators of equal power: +2/3 needs three. The round started at t0, its proposal was
    # complete 100 ms later; prevotes arrive 10, 20, 30 and 500 ms after the proposal.
    t0 = OLD
    proposal = t0 + 100 * MS
    arrivals = {(0, 1, vid): proposal + ms * MS for vid, ms in ((1, 10), (2, 20), (3, 30), (4, 500))}
    arrivals[(0, 2, 1)] = proposal + 60 * MS
    members = [(1, 10), (2, 10), (3, 10), (4, 10)]
    info, delays = latency.measure(0, 1, members, arrivals, {0: (t0, proposal)}, {0: 2}, {0})
    assert info[0].proposer == 2
    assert info[0].flags == latency.PROPOSED | latency.COMMITTED
    assert info[0].quorum == (3, latency.NO_DELAY)  # quorum at the third prevote (30 ms); one precommit only
    assert delays[4] == [(50, latency.NO_DELAY)]  # 500 ms: after the quorum, it did not help liveness
    assert delays[1] == [(1, 6)]
    assert delays[4][0][0] > info[0].quorum[0] >= delays[3][0][0]


def test_without_a_proposal_delays_count_from_the_round_start_and_say_so():
    t0 = OLD
    info, delays = latency.measure(0, 1, [(1, 10)], {(0, 1, 1): t0 + 250 * MS}, {0: (t0, None)}, {0: None}, set())
    assert info[0].flags == 0  # no proposal: the reference is NewRound
    assert delays[1] == [(25, latency.NO_DELAY)]


def test_delays_are_clamped_and_packing_round_trips():
    assert latency.units(10_000) == latency.MAX_UNITS and latency.units(-10_000) == -latency.MAX_UNITS
    delays = {7: [(1, 2), (3, latency.NO_DELAY)], 3: [(-5, 40)]}
    data = latency.pack_delays(delays, [3, 7], 2)
    assert len(data) == 2 * 2 * 2 * 2  # rounds x validators x types x 2 bytes
    values = latency.unpack_delays(data)
    assert list(values) == [-5, 40, 1, 2, latency.NO_DELAY, latency.NO_DELAY, 3, latency.NO_DELAY]
    rounds = [latency.RoundTiming(9, latency.PROPOSED, (4, 8)), latency.RoundTiming(None, 0, (latency.NO_DELAY,) * 2)]
    assert latency.unpack_rounds(latency.pack_rounds(rounds)) == rounds


@pytest.mark.django_db
def test_the_analyzer_keeps_each_votes_delay_and_vantage_in_the_history(net):
    watched = Endpoint.objects.create(chain=net, url="http://user:secret@127.0.0.1:26657/key")
    play(net, 10, all_sign())
    play(net, 11, all_sign())
    play(net, 12, all_sign())
    play(net, 13, all_sign())  # in progress: 11 and 12 are judged
    # Height 11: the proposal came 40 ms after the round started, and D's votes 700 ms after it.
    Round.objects.filter(chain=net, height=11).update(
        proposal_at=OLD + 40 * MS, endpoint="http://***@127.0.0.1:26657/…"
    )
    d = Validator.objects.get(chain=net, address=D)
    Vote.objects.filter(chain=net, height=11, validator=d).update(received_at=OLD + 740 * MS)
    Vote.objects.filter(chain=net, height=11, type=VoteType.PRECOMMIT).exclude(validator=d).update(
        received_at=OLD + 90 * MS
    )
    assert MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once() == 2
    row = HeightHistory.objects.get(chain=net, height=11)
    assert row.vantage == watched.pk  # the endpoint is named by its redacted form, never stored in clear
    voters = sorted(Validator.objects.filter(chain=net, address__in=(A, B, C, D)).values_list("pk", flat=True))
    values = latency.unpack_delays(bytes(row.delays))
    by_validator = {vid: (values[2 * i], values[2 * i + 1]) for i, vid in enumerate(voters)}
    assert by_validator[d.pk] == (70, 70)
    others = {v for vid, v in by_validator.items() if vid != d.pk}
    assert others == {(-4, 5)}  # their prevotes were received with the round's start, before the proposal
    (info,) = latency.unpack_rounds(bytes(row.round_info))
    assert info.flags == latency.PROPOSED | latency.COMMITTED
    assert info.quorum == (-4, 5)  # D was not needed for either quorum


@pytest.mark.django_db
def test_a_round_keeps_its_earliest_proposal_time_and_its_first_vantage_point(chain):
    from consensus import protocol as p
    from consensus.ingest.decode import Batch
    from consensus.ingest.store import ValidatorCache, persist

    cache = ValidatorCache()
    for received, endpoint in ((OLD + 30 * MS, "http://a:1"), (OLD + 20 * MS, "http://b:2")):
        batch = Batch()
        batch.add_event(chain.pk, p.NewRound(5, 0, A, 0), OLD, endpoint)
        batch.add_event(chain.pk, p.CompleteProposal(5, 0, b"\x01" * 32), received, endpoint)
        persist(batch, cache)
    row = Round.objects.get(chain=chain, height=5, round=0)
    assert (row.proposal_at, row.endpoint) == (OLD + 20 * MS, "http://a:1")


def _play_sim(chain, heights: int) -> list[tuple[int, float, object]]:
    """The simulator's emissions for heights 1..heights without a server: (height, time in seconds
    since the first height, event), in the order a node would send them."""
    from datetime import UTC, datetime

    out = []
    start, t0 = datetime.now(UTC), 0.0
    for h in range(1, heights + 1):
        for em in chain.emit_height(h, start):
            if em.end:
                t0 += em.offset
                start += timedelta(seconds=em.offset)
                break
            if em.block is not None:
                chain.commit_block(em.block)
            elif em.event is not None:
                out.append((h, t0 + em.offset, em.event))
    return out


def test_the_simulators_late_validator_relays_its_votes_late_and_in_time_order():
    from consensus.protocol import PRECOMMIT, CompleteProposal, Vote
    from consensus.simulator.chain import SimChain
    from consensus.simulator.scenario import LateVotes, Scenario

    sim = SimChain(scenario=Scenario(late_votes=[LateVotes(0, start=10, end=30, from_ms=300, to_ms=800)]))
    slow = sim.genesis[0].address
    events = _play_sim(sim, 40)
    times = [t for _, t, _ in events]
    assert times == sorted(times)  # a late vote is relayed when it arrives, in order with the rest
    proposals = {e.height: t for _, t, e in events if isinstance(e, CompleteProposal)}
    for height, expected in ((10, 0.3), (20, 0.55), (30, 0.8), (35, 0.8)):
        (arrived,) = [
            t
            for _, t, e in events
            if isinstance(e, Vote) and e.height == height and e.validator_address == slow and e.type == PRECOMMIT
        ]
        # The others precommit within 10 ms of the proposal at 1 s blocks: the delay is the scenario's.
        assert expected <= arrived - proposals[height] <= expected + 0.02
    # Its prevotes reach the node after the height is committed: dropped, as CometBFT drops them.
    assert not [
        e
        for _, _, e in events
        if isinstance(e, Vote) and e.validator_address == slow and e.height >= 10 and e.type != PRECOMMIT
    ]


def test_the_simulators_failing_proposer_misses_every_third_turn():
    from consensus.protocol import CompleteProposal, NewRound
    from consensus.simulator.chain import SimChain
    from consensus.simulator.scenario import FailedProposals, Scenario

    sim = SimChain(scenario=Scenario(failed_proposals=[FailedProposals(1)]))
    events = _play_sim(sim, 48)
    turns = [
        (e.height, e.round)
        for _, _, e in events
        if isinstance(e, NewRound) and e.proposer_address == sim.genesis[1].address
    ]
    proposed = {(e.height, e.round) for _, _, e in events if isinstance(e, CompleteProposal)}
    outcome = ["C" if turn in proposed else "-" for turn in turns]
    assert len(outcome) >= 12
    assert outcome[:9] == ["C", "C", "-"] * 3


SLOW_MS = 300  # the scenario's late validator
BLOCK = 0.6


@pytest.mark.slow
@pytest.mark.django_db
def test_a_late_validator_and_a_failing_proposer_through_the_whole_pipeline(sim, redis_client, user_client):
    from analysis.models import Alert, AlertKind, AlertSettings
    from consensus.ingest import StreamConsumer
    from consensus.models import Chain
    from consensus.simulator import Scenario, SimChain
    from consensus.simulator.scenario import EmptyBlocks, FailedProposals, LateVotes
    from validators.indexer import ChainIndexer

    from .subscriberhelpers import running, target, wait_until

    scenario = Scenario(
        late_votes=[LateVotes(0, start=1, end=2, from_ms=SLOW_MS, to_ms=SLOW_MS)],
        failed_proposals=[FailedProposals(1)],
        empty_blocks=[EmptyBlocks(2)],
    )
    sim_chain = SimChain("sim-1", validators=4, block_time=BLOCK, scenario=scenario)
    (node,) = sim.add_chain(sim_chain)
    sim.start()
    chain = Chain.objects.create(name="sim-1", chain_id="sim-1")
    Endpoint.objects.create(chain=chain, url=node.url)
    AlertSettings.objects.create(
        chain=chain, grace_seconds=0, latency_window=20, slow_min_ms=100, proposer_turns=6, proposer_failures=2
    )
    wait_until(lambda: sim_chain.latest_height >= 2, message="the chain started")
    ChainIndexer(chain).run_once()
    with running([target("sim-1", node)], redis_client) as runner:
        first = wait_until(lambda: runner.workers[0].last_height, message="watching")
        wait_until(lambda: sim_chain.latest_height >= first + 32, timeout=60, message="32 heights")
    StreamConsumer([chain], client=redis_client, consumer="t", block_ms=50).run(idle_exit=True, pipelined=False)
    analyzer = MissingVoteAnalyzer([chain], lookup_workers=0, backlog=500, fetch_commits=False, fetch_blocks=True)
    analyzer.settle()
    # The block metas of the judged heights were fetched after the tick's rules ran: the next
    # evaluation of the performance rules sees them.
    from django.utils import timezone

    from analysis.alerts import evaluate
    from consensus.models import Block

    evaluate(chain, timezone.now(), with_performance=True)
    slow = Validator.objects.get(chain=chain, address=sim_chain.genesis[0].address)
    failing = Validator.objects.get(chain=chain, address=sim_chain.genesis[1].address)

    stats = latency.chain_latency(chain.pk, 30)
    assert stats.vantage == Endpoint.objects.get(chain=chain).pk and stats.other_vantages == 0
    mine = stats.validators[slow.pk]
    others = [v for vid, v in stats.validators.items() if vid != slow.pk]
    # Its precommits leave the simulator SLOW_MS after the others' (which come within ~10 ms of the
    # proposal at these block times), plus ctop's own event-loop and socket jitter of a few ms, and
    # the 10 ms unit: SLOW_MS - 10 ms to SLOW_MS + 40 ms.
    assert SLOW_MS - 10 <= mine.p50_ms <= mine.p95_ms <= SLOW_MS + 40, mine
    assert all(v.p95_ms < 60 for v in others), others
    assert mine.after_quorum == 1.0 and all(v.after_quorum < 0.5 for v in others)

    # Every third turn of validator 1 had no proposal; the round after it committed instead.
    record = latency.proposers(chain.pk, 40)[failing.pk]
    assert record.turns >= 6 and record.turns - record.proposed == record.recent.count("-")
    assert "-" in record.recent and "--" not in record.recent[:6]  # one failure in three turns
    assert all(r.recent.count("-") == 0 for vid, r in latency.proposers(chain.pk, 40).items() if vid != failing.pk)

    # Every judged height's block, as the simulator made it; validator 2's are all empty.
    empty = Validator.objects.get(chain=chain, address=sim_chain.genesis[2].address)
    judged = set(HeightHistory.objects.filter(chain=chain).values_list("height", flat=True))
    stored = {b.height: b for b in Block.objects.filter(chain=chain)}
    assert judged and set(stored) == set(range(min(judged), max(judged) + 1))
    for height, b in stored.items():
        made = sim_chain.blocks.get(height)
        if made is not None:  # the simulator keeps its latest blocks only
            assert (b.txs, b.time) == (made.txs, made.time)
        assert (b.txs == 0) == (b.proposer_id == empty.pk or height % 20 == 0)

    alerts = {(a.kind, a.validator_id) for a in Alert.objects.filter(chain=chain, is_open=True)}
    assert (AlertKind.SLOW_VALIDATOR, slow.pk) in alerts
    assert (AlertKind.FAILED_PROPOSALS, failing.pk) in alerts
    assert {vid for kind, vid in alerts if kind == AlertKind.EMPTY_BLOCKS} == {empty.pk}
    assert not {vid for kind, vid in alerts if kind == AlertKind.SLOW_VALIDATOR} - {slow.pk}
    assert not {kind for kind, _ in alerts} & {AlertKind.MISSED_VOTES, AlertKind.HALT_RISK}

    # The chain's performance page ranks it first, says where it was measured, and maps the delays.
    page = user_client.get("/chains/sim-1/performance/").content.decode()
    assert "Measured at" in page and node.url.split("//")[1].split("/")[0] in page
    ranked = page.index("Slowest validators")
    assert page.index(slow.short, ranked) < min(
        page.index(v.short, ranked) for v in Validator.objects.filter(chain=chain).exclude(pk=slow.pk)
    )
    assert 'class="d2"' in page or 'class="d3"' in page  # its 300 ms cells
    assert "no proposal" in page and "-" in page
    page = user_client.get(f"/chains/sim-1/validators/{slow.address}/").content.decode()
    assert "arrival delay p50" in page and "after +2/3" in page


@pytest.mark.django_db
def test_clock_skew_is_each_validators_median_over_the_latest_heights_and_on_the_page(net, user_client):
    for h in (1, 2, 3):
        play(net, h, all_sign())
    d = Validator.objects.get(chain=net, address=D)
    # D's votes say they were made 300 ms before the node received them (its clock behind, or a slow
    # network); at height 1, long ago, 5 s: outside the latest two heights.
    Vote.objects.filter(chain=net, validator=d).update(skew=-30)
    Vote.objects.filter(chain=net, validator=d, height=1).update(skew=-500)
    skews = latency.clock_skews(net.pk, 2)
    assert skews[d.pk] == (-300, 4)  # two heights, two votes each
    assert {s for vid, s in skews.items() if vid != d.pk} == {(0, 4)}
    play(net, 4, all_sign())
    Round.objects.filter(chain=net).update(proposal_at=OLD)  # timed votes: the page lists the validators
    assert MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once() >= 1
    page = user_client.get(f"/chains/{net.name}/performance/").content.decode()
    assert "clock skew p50" in page and "-300 ms" in page
