"""subscribe_events against the simulator: nothing dropped, every fault handled."""

from __future__ import annotations

import logging
import time

from consensus import protocol as p
from consensus.protocol.stream import KIND_COMMIT, KIND_GAP, KIND_STATUS
from consensus.simulator import Scenario, SimChain, Window

from .subscriberhelpers import decoded, entries, entries_of_kind, frames, running, target, wait_until


def test_every_event_arrives_in_redis_exactly_as_sent(sim, redis_client):
    chain = SimChain("sim-1", validators=5, block_time=0.05)
    (node,) = sim.add_chain(chain)
    node.record = True
    sim.start()
    with running([target("sim-1", node)], redis_client) as runner:
        wait_until(lambda: runner.writer.stats.delivered > 400, message="400 entries")
    sent = [f for conn in node.recorded for f in conn.sent_frames if '"result":{}' not in f]
    stored = [f for f in frames(redis_client, "sim-1")]
    # Byte for byte and in order; the subscriber may have stopped before reading the last few.
    assert len(stored) >= 400
    assert stored == sent[: len(stored)]
    assert len(sent) - len(stored) < 50
    assert runner.report.undelivered == 0
    # Received time and endpoint travel with each frame.
    e = entries(redis_client, "sim-1")[-1]
    assert e.endpoint == node.url and abs(e.received_ns / 1e9 - time.time()) < 30


def test_late_precommit_after_the_next_height_is_kept(sim, redis_client):
    chain = SimChain(
        "sim-1",
        validators=4,
        block_time=0.1,
        scenario=Scenario(late_precommits=[Window(validator=0, start=1, end=10**6)]),
    )
    (node,) = sim.add_chain(chain)
    sim.start()
    late = chain.genesis[0].address
    with running([target("sim-1", node)], redis_client):
        wait_until(lambda: len([v for v in decoded(redis_client, "sim-1") if isinstance(v, p.NewRound)]) >= 6)
    values = decoded(redis_client, "sim-1")
    kept = 0
    for i, v in enumerate(values):
        if isinstance(v, p.Vote) and v.type == p.PRECOMMIT and v.validator_address == late:
            started = [x.height for x in values[:i] if isinstance(x, p.NewRound)]
            assert started[-1] == v.height + 1
            kept += 1
    assert kept >= 3


def test_dropped_connections_reconnect_record_gaps_and_backfill(sim, redis_client):
    chain = SimChain("sim-1", validators=4, block_time=0.1)
    (node,) = sim.add_chain(chain)
    sim.start()
    with running([target("sim-1", node)], redis_client) as runner:
        wait_until(lambda: runner.workers and runner.workers[0].last_height and runner.workers[0].last_height > 3)
        sim.call(lambda: setattr(node, "accepting", False))
        sim.call(node.drop_connections())
        time.sleep(1.0)  # heights pass while ctop is not listening
        sim.call(lambda: setattr(node, "accepting", True))
        wait_until(
            lambda: any(
                g.get("backfilled") and "not listening" in g["reason"]
                for g in entries_of_kind(redis_client, "sim-1", KIND_GAP)
            ),
            message="the reconnection's gap, backfilled",
        )
        worker = runner.workers[0]
        assert worker.counters.reconnects >= 1
    gaps = [g for g in entries_of_kind(redis_client, "sim-1", KIND_GAP) if "not listening" in g["reason"]]
    assert gaps and gaps[0]["to"] - gaps[0]["from"] >= 5  # ~1 s of 0.1 s blocks
    commits = [p.decode_commit(e.payload) for e in entries(redis_client, "sim-1") if e.kind == KIND_COMMIT]
    assert all(c.canonical for c in commits)
    covered = {c.height for c in commits}
    assert set(range(gaps[0]["from"], gaps[0]["to"] + 1)) <= covered
    states = [s["state"] for s in entries_of_kind(redis_client, "sim-1", KIND_STATUS)]
    assert states[:1] == ["connected"] and "disconnected" in states


def test_malformed_frames_are_forwarded_not_dropped(sim, redis_client):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.05, scenario=Scenario(malformed_every=10)))
    sim.start()
    with running([target("sim-1", node)], redis_client) as runner:
        wait_until(lambda: runner.workers[0].counters.malformed >= 3)
    bad = [v for v in decoded(redis_client, "sim-1") if isinstance(v, p.ProtocolError)]
    assert len(bad) >= 3  # in Redis, for stream_events to dead-letter with the reason


def test_subscription_cancelled_is_recovered_and_counted(sim, redis_client):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    with running([target("sim-1", node)], redis_client) as runner:
        wait_until(lambda: runner.workers[0].counters.events > 20)
        sim.call(lambda: node.cancel_subscriptions("CometBFT exited"))
        wait_until(lambda: runner.workers[0].counters.errors.get("subscription_cancelled") == 1)
        before = runner.workers[0].counters.events
        wait_until(lambda: runner.workers[0].counters.events > before + 20, message="events after re-subscribing")
        assert runner.workers[0].counters.reconnects == 1


def test_failover_from_a_lagging_endpoint_and_back(sim, redis_client):
    chain = SimChain("sim-1", validators=4, block_time=0.1)
    primary, backup = sim.add_chain(chain, nodes=2)
    sim.start()
    with running([target("sim-1", primary, backup)], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.connected_url == primary.url and worker.counters.events > 10)
        sim.call(lambda: primary.stall(4.0))  # lags: no events, /status stuck
        wait_until(lambda: worker.connected_url == backup.url, message="failover to the backup")
        wait_until(lambda: worker.connected_url == primary.url, timeout=20, message="failback to the primary")
        assert worker.counters.failovers >= 2
    heights = sorted({v.height for v in decoded(redis_client, "sim-1") if isinstance(v, p.Vote)})
    assert heights[-1] - heights[0] >= 40


def test_wrong_chain_endpoint_is_refused(sim, redis_client, caplog):
    right = SimChain("sim-1", validators=4, block_time=0.1)
    wrong = SimChain("other-9", validators=4, block_time=0.1)
    (impostor,) = sim.add_chain(wrong)
    (good,) = sim.add_chain(right)
    sim.start()
    caplog.set_level(logging.ERROR, "ctop.subscriber")
    with running([target("sim-1", impostor, good, chain_id="sim-1")], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.counters.events > 20)
        assert worker.connected_url == good.url
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert refused == [
        f"chain=sim-1 endpoint={impostor.url} refused: wrong chain-id 'other-9' (expected 'sim-1')"
    ]  # said once, however often it is checked
    addresses = {v.validator_address for v in decoded(redis_client, "sim-1") if isinstance(v, p.Vote)}
    assert addresses == {v.address for v in right.genesis}


def test_all_endpoints_down_is_reported_and_one_chain_never_stalls_another(sim, redis_client, caplog):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    dead = type("Dead", (), {"url": "http://127.0.0.1:9"})()
    with running([target("dead", dead), target("sim-1", node)], redis_client) as runner:
        wait_until(lambda: runner.workers[1].counters.events > 50)
    assert runner.workers[0].counters.events == 0
    assert [s["state"] for s in entries_of_kind(redis_client, "dead", KIND_STATUS)] == ["all_failing"]
    assert "all endpoints failing" in caplog.text


def test_silent_feed_while_the_chain_advances_reconnects(sim, redis_client):
    (node,) = sim.add_chain(SimChain("sim-1", validators=4, block_time=0.1))
    sim.start()
    with running([target("sim-1", node)], redis_client) as runner:
        worker = runner.workers[0]
        wait_until(lambda: worker.counters.events > 10)
        # The node stops forwarding to this connection but keeps making blocks (a dead feed).
        sim.call(lambda: [c.subs.clear() for c in node.connections])
        wait_until(lambda: worker.counters.reconnects >= 1, timeout=15, message="reconnect after silence")
        before = worker.counters.events
        wait_until(lambda: worker.counters.events > before + 10)
