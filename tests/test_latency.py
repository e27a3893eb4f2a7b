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
