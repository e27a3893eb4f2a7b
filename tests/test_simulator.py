"""The built-in simulator behaves like a CometBFT node on the wire."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import websocket

from consensus import protocol as p
from consensus.simulator import Halt, Scenario, SetChange, SimChain, Window

from .simhelpers import WSClient, get, wait_for_height


def start_chain(sim, **kw):
    kw.setdefault("block_time", 0.1)
    chain = SimChain(kw.pop("chain_id", "sim-1"), **kw)
    nodes = sim.add_chain(chain, nodes=kw.pop("nodes", 1))
    sim.start()
    return chain, nodes


def votes_of(values):
    return [v for v in values if isinstance(v, p.Vote)]


def test_subscriptions_stream_decodable_events(sim):
    chain, (node,) = start_chain(sim, validators=4)
    ws = WSClient(node.url)
    ws.subscribe("NewRound", "NewRoundStep", "Vote")
    values = ws.collect(3.0, until=lambda vs: len({v.height for v in votes_of(vs)}) >= 6)
    ws.close()
    assert [v.request_id for v in values if isinstance(v, p.SubscribeAck)] == [0, 1, 2]
    assert not [v for v in values if isinstance(v, Exception)]
    votes = votes_of(values)
    heights = sorted({v.height for v in votes})
    full = heights[1:-1]  # the first and last may be partial
    assert len(full) >= 3
    addresses = {v.address for v in chain.validator_set(1)}
    for h in full:
        assert {v.validator_address for v in votes if v.height == h and v.type == p.PREVOTE} == addresses
        assert {v.validator_address for v in votes if v.height == h and v.type == p.PRECOMMIT} == addresses
    # validator_index is the position in /validators order, as on a real node
    page = p.decode_validators(get(node.url, "/validators").text)
    order = [v.address for v in page.validators]
    assert all(order[v.validator_index] == v.validator_address for v in votes)
    steps = [v for v in values if isinstance(v, p.RoundStep)]
    assert {"RoundStepNewHeight", "RoundStepPropose", "RoundStepPrevote", "RoundStepPrecommit", "RoundStepCommit"} <= {
        s.step_name for s in steps
    }


def test_subscription_limits_and_errors_like_the_real_node(sim):
    # The same request sequence as the real capture ws_frames_errors.jsonl, with the same replies.
    _, (node,) = start_chain(sim)
    ws = WSClient(node.url)
    ws.subscribe("NewRound", "NewRoundStep", "Vote", "CompleteProposal", "NewBlock")
    ws.subscribe("Tx")  # 5: a sixth subscription
    ws.send("unsubscribe", {"query": "tm.event='NewBlock'"})  # 6
    ws.subscribe("Vote")  # 7: duplicate
    ws.send("subscribe", {"query": "tm.event = = 'x"})  # 8
    ws.send("unsubscribe", {"query": "tm.event='ValidatorSetUpdates'"})  # 9
    ws.send("status")  # 10
    ws.send("unsubscribe_all")  # 11
    values = ws.collect(2.0, until=lambda vs: any(getattr(v, "request_id", None) == 11 for v in vs))
    ws.close()
    kinds = {v.request_id: v.kind for v in values if isinstance(v, p.RPCError)}
    assert kinds == {
        5: p.RPCErrorKind.SUBSCRIPTION_LIMIT,
        7: p.RPCErrorKind.ALREADY_SUBSCRIBED,
        8: p.RPCErrorKind.BAD_QUERY,
        9: p.RPCErrorKind.SUBSCRIPTION_NOT_FOUND,
        10: p.RPCErrorKind.METHOD_NOT_FOUND,
    }
    acks = [v.request_id for v in values if isinstance(v, p.SubscribeAck)]
    assert acks == [0, 1, 2, 3, 4, 6, 11]


@pytest.mark.parametrize(("n", "pages"), [(1, 1), (100, 1), (101, 2), (500, 5)])
def test_validators_paginate_like_the_real_node(sim, n, pages):
    _, (node,) = start_chain(sim, validators=n, block_time=0.2)
    wait_for_height(node.url, 1)
    seen = []
    for page in range(1, pages + 1):
        reply = p.decode_validators(get(node.url, "/validators", page=page, per_page=100).text)
        assert reply.total == n
        seen += reply.validators
    assert len({v.address for v in seen}) == n
    # Sorted by power then address.
    assert [v.address for v in seen] == sorted(v.address for v in seen)
    response = get(node.url, "/validators", page=pages + 1, per_page=100)
    assert response.status_code == 500
    assert response.json()["error"]["data"] == f"page should be within [1, {pages}] range, given {pages + 1}"
    # per_page above 100 is cut to 100; default is 30
    assert p.decode_validators(get(node.url, "/validators", per_page=500).text).count == min(n, 100)
    assert p.decode_validators(get(node.url, "/validators").text).count == min(n, 30)


def test_offline_validator_and_nil_voter_show_in_votes_and_commits(sim):
    scenario = Scenario(
        offline=[Window(validator=1, start=1, end=10_000)], nil_votes=[Window(validator=2, start=1, end=10_000)]
    )
    # 7 validators: with one offline and one voting nil, 5/7 > 2/3 still commit blocks.
    chain, (node,) = start_chain(sim, validators=7, scenario=scenario)
    ws = WSClient(node.url)
    ws.subscribe("Vote", "NewRound")
    values = ws.collect(5.0, until=lambda vs: len({v.height for v in votes_of(vs)}) >= 10)
    ws.close()
    votes = votes_of(values)
    offline, nil_voter = chain.genesis[1].address, chain.genesis[2].address
    assert offline not in {v.validator_address for v in votes}
    assert all(v.is_nil for v in votes if v.validator_address == nil_voter)
    latest = wait_for_height(node.url, 5)
    for h in range(2, latest):
        block = p.decode_block(get(node.url, "/block", height=h + 1).text)
        flags = {s.validator_address or "absent": s.flag for s in block.last_commit.signatures}
        commit = p.decode_commit(get(node.url, "/commit", height=h).text)
        assert commit.canonical is True and commit.signatures == block.last_commit.signatures
        assert flags.get(nil_voter) == p.FLAG_NIL
        assert flags.get("absent") == p.FLAG_ABSENT
        assert [s.flag for s in block.last_commit.signatures].count(p.FLAG_COMMIT) == 5
        # the absent slot sits at the offline validator's index
        order = [v.address for v in chain.validator_set(h)]
        assert block.last_commit.signatures[order.index(offline)].flag == p.FLAG_ABSENT
        # on the wire, like a real node: an absent slot has empty address and timestamp, null signature
        raw = get(node.url, "/block", height=h + 1).json()["result"]["block"]["last_commit"]["signatures"]
        absent = raw[order.index(offline)]
        assert absent["signature"] is None and absent["validator_address"] == ""
    # the offline validator's proposals time out: round 0 nil, round 1 commits
    multi = {v.height for v in votes if v.round == 1}
    assert multi
    for h in multi:
        assert all(v.is_nil for v in votes if v.height == h and v.round == 0 and v.validator_address != nil_voter)


def test_halt_is_silence_at_prevote_then_recovery(sim):
    scenario = Scenario(halts=[Halt(height=5, seconds=1.5, offline=(0, 1))])
    _chain, (node,) = start_chain(sim, validators=4, scenario=scenario)
    ws = WSClient(node.url)
    ws.subscribe("NewRound", "NewRoundStep", "Vote")
    statuses: list[tuple[float, int]] = []  # (when, /status height), polled all along
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            statuses.append((time.monotonic(), p.decode_status(get(node.url, "/status").text).latest_height))
            stop.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    received: list[tuple[float, object]] = []
    deadline = time.monotonic() + 8.0
    while time.monotonic() < deadline:
        raw = ws.recv(0.2)
        if raw is not None:
            value = p.decode_frame(raw)
            received.append((time.monotonic(), value))
            if isinstance(value, p.NewRound) and value.height == 6:
                break
    stop.set()
    poller.join(2)
    ws.close()
    at5 = [v for _, v in received if getattr(v, "height", None) == 5]
    steps = [v.step_name for v in at5 if isinstance(v, p.RoundStep)]
    assert "RoundStepPrevoteWait" in steps  # the recovery, as in the real capture
    rounds5 = sorted({v.round for v in at5 if isinstance(v, p.NewRound)})
    assert rounds5 == [0, 1]  # no climbing rounds during the halt
    assert any(isinstance(v, p.NewRound) and v.height == 6 for _, v in received)
    # During the halt the node was silent (the longest pause between frames is the halt's) ...
    pauses = [(b[0] - a[0], a[0], b[0]) for a, b in itertools.pairwise(received)]
    silence, began, ended = max(pauses)
    assert silence >= 1.2
    # ... and /status stayed at height 4 all that time.
    during = [h for t, h in statuses if began + 0.1 < t < ended - 0.1]
    assert during and set(during) == {4}


def test_halt_status_is_stale_while_halted(sim):
    scenario = Scenario(halts=[Halt(height=3, seconds=3.0, offline=(0, 1))])
    _, (node,) = start_chain(sim, validators=4, scenario=scenario)
    wait_for_height(node.url, 2)
    time.sleep(0.5)
    first = p.decode_status(get(node.url, "/status").text)
    time.sleep(1.0)
    second = p.decode_status(get(node.url, "/status").text)
    assert first.latest_height == second.latest_height == 2
    assert second.latest_block_time == first.latest_block_time


def test_late_precommits_arrive_after_the_next_height_started(sim):
    scenario = Scenario(late_precommits=[Window(validator=0, start=1, end=10_000)])
    chain, (node,) = start_chain(sim, validators=4, scenario=scenario)
    late = chain.genesis[0].address
    ws = WSClient(node.url)
    ws.subscribe("NewRound", "Vote")
    values = ws.collect(3.0, until=lambda vs: len([v for v in vs if isinstance(v, p.NewRound)]) >= 6)
    ws.close()
    checked = 0
    for i, v in enumerate(values):
        if isinstance(v, p.Vote) and v.type == p.PRECOMMIT and v.validator_address == late:
            before = [x for x in values[:i] if isinstance(x, p.NewRound)]
            assert before and before[-1].height == v.height + 1
            checked += 1
    assert checked >= 2
    h = wait_for_height(node.url, 4)
    sigs = p.decode_commit(get(node.url, "/commit", height=h - 1).text).signatures
    assert {s.validator_address for s in sigs if s.flag == p.FLAG_COMMIT} >= {late}


def test_set_changes_take_effect_at_their_height(sim):
    scenario = Scenario(
        set_changes=[SetChange(height=4, validator=4, power=5000), SetChange(height=4, validator=0, power=0)]
    )
    chain, (node,) = start_chain(sim, validators=4, scenario=scenario)
    wait_for_height(node.url, 5)
    before = p.decode_validators(get(node.url, "/validators", height=3).text)
    after = p.decode_validators(get(node.url, "/validators", height=4).text)
    assert before.total == 4 and after.total == 4
    assert chain.genesis[0].address in {v.address for v in before.validators}
    assert chain.genesis[0].address not in {v.address for v in after.validators}
    assert after.validators[0].voting_power == 5000  # the newcomer sorts first by power
    response = get(node.url, "/validators", height=10_000)
    assert "must be less than or equal to the current blockchain height" in response.json()["error"]["data"]


def test_dropped_connections_stall_and_malformed_frames(sim):
    _chain, (node,) = start_chain(sim, validators=4, scenario=Scenario(malformed_every=7))
    ws = WSClient(node.url)
    ws.subscribe("Vote")
    values = ws.collect(1.0)
    assert any(isinstance(v, p.ProtocolError) for v in values)
    assert votes_of(values)
    sim.call(lambda: node.stall(1.0))
    time.sleep(0.2)  # drain what was in flight
    ws.collect(0.1)
    assert votes_of(ws.collect(0.6)) == []  # stalled: nothing forwarded
    assert votes_of(ws.collect(1.5))  # and back
    sim.call(node.drop_connections())

    def read_until_closed():
        for _ in range(10_000):
            if ws.ws.recv() == "":
                return "closed"
        return "still open"

    try:
        outcome = read_until_closed()
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        outcome = "closed"
    assert outcome == "closed"
    ws.close()


def test_rounds_climb_when_no_block_gets_two_thirds(sim):
    # 3 of 4 online but one of them votes nil: prevotes for the block stay at 1/2, so the height
    # never commits and the rounds climb (unlike a halt, the node is not silent).
    scenario = Scenario(
        offline=[Window(validator=1, start=3, end=10_000)], nil_votes=[Window(validator=2, start=3, end=10_000)]
    )
    _, (node,) = start_chain(sim, validators=4, scenario=scenario, block_time=0.05, timeout_propose=0.05)
    ws = WSClient(node.url)
    ws.subscribe("NewRound")
    values = ws.collect(5.0, until=lambda vs: any(isinstance(v, p.NewRound) and v.round >= 4 for v in vs))
    ws.close()
    rounds = [v.round for v in values if isinstance(v, p.NewRound) and v.height == 3]
    assert rounds[:5] == [0, 1, 2, 3, 4]


def test_a_chain_can_start_at_any_height(sim):
    from consensus.simulator import build_network

    network = build_network(
        chains=1, validators=4, block_time=0.1, scenario=Scenario(), base_port=0, start_height=1_000_000
    )
    _, nodes = network.chains[0]
    sim.network = network
    sim.start()
    latest = wait_for_height(nodes[0].url, 1_000_001)
    assert latest >= 1_000_001
    assert p.decode_validators(get(nodes[0].url, "/validators", height=1_000_000).text).total == 4
