"""Block metas (analysis.blocks): /blockchain decoded from a real node's reply and from hostile
ones, checked against what ctop knows before they are kept, fetched page by page without asking a
lying or lagging node twice, read back per proposer, and the empty-blocks alert with its lifecycle."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from analysis import blocks, performance
from analysis.lifecycle import apply
from analysis.models import Alert, AlertKind, AlertSettings
from consensus import protocol as p
from consensus.models import Block, Round, Validator
from consensus.protocol import encode
from consensus.protocol.headers import EMPTY_HASH, header_hash
from consensus.rpc import EndpointError

from .analysishelpers import A, B, C, D, E, vid
from .conftest import FIXTURES

NOW = timezone.now()


def test_the_blockchain_reply_of_a_real_node_decodes():
    last, metas = p.decode_blockchain((FIXTURES / "http_blockchain.json").read_text())
    assert last == 8
    assert [m.height for m in metas] == [4, 3, 2]  # newest first, as the node sends them
    assert {m.chain_id for m in metas} == {"injective-777"}
    assert [(m.num_txs, m.block_size) for m in metas] == [(0, 913)] * 3
    assert metas[0].proposer_address == "B1F9C30BF77814FEA0C6252C1000BDF3CB5D6919"
    assert metas[2].time < metas[1].time < metas[0].time
    assert all(m.header_hash == m.block_hash and m.data_hash == EMPTY_HASH for m in metas)  # real headers


def _reply(metas: list[dict], last: str = "10") -> str:
    return json.dumps({"jsonrpc": "2.0", "id": -1, "result": {"last_height": last, "block_metas": metas}})


def _meta(height: int = 5, **overrides) -> dict:
    header = {"chain_id": "test-1", "height": str(height), "time": "2026-12-01T00:00:00Z", "proposer_address": A}
    doc = {"block_id": {}, "block_size": "900", "header": header, "num_txs": "3"}
    for key, value in overrides.items():
        (header if key in header else doc)[key] = value
    return doc


@pytest.mark.parametrize(
    "body",
    [
        _reply([_meta(num_txs="-1")]),
        _reply([_meta(num_txs="999999999999")]),  # more transactions than a block can hold bytes
        _reply([_meta(block_size="1e9")]),
        _reply([_meta(proposer_address="not hex")]),
        _reply([_meta(height="0")]),
        _reply([_meta(time="yesterday")]),
        _reply([_meta(h) for h in range(1, 22)]),  # 21 metas: more than any node's page
        _reply([_meta()], last="-3"),
        json.dumps({"jsonrpc": "2.0", "id": -1, "result": {"last_height": "9", "block_metas": {"0": _meta()}}}),
    ],
)
def test_hostile_blockchain_replies_are_a_protocol_error(body):
    with pytest.raises(p.ProtocolError):
        p.decode_blockchain(body)


def _bm(
    height: int,
    proposer: str = A,
    *,
    chain_id: str = "test-1",
    txs: int = 3,
    time=None,
    data_hash: bytes | None = None,
    block_hash: bytes | None = None,
) -> p.BlockMeta:
    """A block meta as a node would send it: a real header, its hash as the block id (or
    `block_hash`: a node lying about it), a data hash that says whether it carries transactions."""
    time = time or NOW - timedelta(minutes=1)
    if data_hash is None and txs:
        data_hash = hashlib.sha256(f"txs {height}".encode()).digest()
    header = encode.header_doc(
        chain_id=chain_id, height=height, time=time, last_block_hash=None, proposer=proposer, data_hash=data_hash
    )
    real = header_hash(header)
    return p.BlockMeta(height, time, chain_id, proposer, txs, 900, block_hash or real, data_hash or EMPTY_HASH, real)


def saw(chain, *metas: p.BlockMeta) -> None:
    """ctop saw these blocks proposed (CompleteProposal): a Round each, with the block's hash."""
    for m in metas:
        Round.objects.update_or_create(
            chain=chain, height=m.height, round=0, defaults={"started_at": NOW, "block_hash": m.block_hash}
        )


@pytest.mark.django_db
def test_block_metas_are_kept_only_when_they_agree_with_what_ctop_knows(net):
    from validators.services import Member, apply_set

    # E is a validator of the chain, but only in the set from height 50.
    apply_set(net.pk, 50, [Member(a, 10, i) for i, a in enumerate((A, B, C, D, E))])
    good, empty = _bm(5), _bm(10, B, txs=0)
    metas = [
        good,
        _bm(6, chain_id="other-1"),
        _bm(7, "F" * 40),  # nobody ctop knows
        _bm(8, E),  # not in the set at height 8
        _bm(9, time=NOW + timedelta(hours=1)),
        _bm(30),  # not asked for
        _bm(5, B),  # the same height twice
        empty,
        _bm(11, block_hash=b"\x07" * 32),  # a block id its header does not hash to
        _bm(13, txs=0, data_hash=b"\x09" * 32),  # "empty", but its header says it carries transactions
    ]
    saw(net, *(m for m in metas if m.height != 30 and m is not metas[6]))  # one proposal seen at 5: A's
    unseen = _bm(12)  # a block ctop never saw proposed (a gap height), however well formed
    Round.objects.create(chain=net, height=12, round=0, started_at=NOW, block_hash=b"\x05" * 32)
    rows, refused = blocks.check(net, 5, 20, [*metas, unseen, _bm(14)], NOW)
    assert [(r.height, r.proposer_id, r.txs) for r in rows] == [(5, vid(net, A), 3), (10, vid(net, B), 0)]
    reasons = dict(refused)
    assert sorted(reasons) == [5, 6, 7, 8, 9, 11, 12, 13, 14, 30]
    assert "other-1" in reasons[6] and "not a known validator" in reasons[7] and "active set at 8" in reasons[8]
    assert "future" in reasons[9] and "not asked" in reasons[30] and "came twice" in reasons[5]
    assert "does not hash" in reasons[11] and "data hash" in reasons[13]
    assert "not a block ctop saw proposed" in reasons[12] and "not a block ctop saw proposed" in reasons[14]


class FakeNode:
    """A node for fault injection: /status and /blockchain over heights base..last, answering a page
    wholly outside them with an error, as CometBFT's filterMinMax does."""

    url = "http://user:secret@node.example:26657"

    def __init__(self, last: int, make=None, base: int = 1) -> None:
        self.last, self.base = last, base
        self.make = make or (lambda h: _bm(h, (A, B, C, D)[h % 4], txs=h % 3))
        self.calls: list[tuple[int, int]] = []

    def status(self) -> p.Status:
        return p.Status("test-1", "1.0.1", "fake", self.last, NOW, self.base, False)

    def blockchain(self, lo: int, hi: int):
        self.calls.append((lo, hi))
        lo, hi = max(lo, self.base), min(hi, self.last)
        if lo > hi:
            raise EndpointError(self.url, f"/blockchain: min height {lo} can't be greater than max height {hi}")
        return self.last, [self.make(h) for h in range(hi, lo - 1, -1)]


@pytest.mark.django_db
def test_fetch_goes_page_by_page_stops_at_the_nodes_latest_height_and_stores_once(net, caplog):
    node = FakeNode(last=25)
    saw(net, *(node.make(h) for h in range(1, 81)))
    result = blocks.fetch(net, node, 1, 45)
    assert node.calls == [(1, 20), (21, 40)]  # the node is at 25: the rest is asked for later
    assert (result.stored, result.covered, result.refused) == (25, 25, [])
    assert blocks.fetch(net, node, 1, 25).stored == 25  # asked again: stored once (natural key)
    assert Block.objects.filter(chain=net).count() == 25
    assert blocks.next_wanted(net, judged_to=40, backlog=1000) == 26
    assert blocks.next_wanted(net, judged_to=5000, backlog=1000) == 4001  # a long outage is not fetched back
    row = Block.objects.get(chain=net, height=7)
    assert (row.proposer_id, row.txs, row.size) == (vid(net, D), 1, 900)

    # A lying node: every meta refused, the heights answered for all the same (never asked in a loop),
    # a few log lines a page, its URL redacted.
    liar = FakeNode(last=80, make=lambda h: _bm(h, chain_id="forged-1"))
    result = blocks.fetch(net, liar, 26, 65)
    assert (result.stored, result.covered, len(result.refused)) == (0, 65, 40)
    assert blocks.next_wanted(net, judged_to=80, backlog=1000, covered=result.covered) == 66
    assert "secret" not in caplog.text and "forged-1" in caplog.text
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 6  # 3 for each of 2 pages


@pytest.mark.django_db
def test_a_pruning_node_and_a_node_behind_never_lock_the_fetching(net):
    from analysis.lookups import RemoteLookups

    # The node kept heights 500..520 only: asking 201..400 would be its error, again and again.
    node = FakeNode(last=520, base=500)
    saw(net, *(node.make(h) for h in range(490, 521)))
    lookups = RemoteLookups(workers=0, client_factory=lambda url: node)
    lookups._fetch_blocks(net, 201, 400)
    assert node.calls == [] and lookups.blocks_covered[net.pk] == 400 and net.pk not in lookups.blocks_failed
    lookups._fetch_blocks(net, 490, 530)  # pruned below 500, behind above 520
    assert node.calls == [(500, 519), (520, 520)]
    assert lookups.blocks_covered[net.pk] == 520  # 521..530: asked again once the node has them
    assert sorted(Block.objects.filter(chain=net).values_list("height", flat=True)) == list(range(500, 521))


def _blocks(chain, proposers: list[str], txs) -> None:
    """Blocks 1..len(proposers): `txs(height, address)` transactions each."""
    ids = {v.address: v.pk for v in Validator.objects.filter(chain=chain)}
    Block.objects.bulk_create(
        Block(chain=chain, height=h, time=NOW, proposer_id=ids[a], txs=txs(h, a), size=900)
        for h, a in enumerate(proposers, start=1)
    )


@pytest.mark.django_db
def test_empty_blocks_alert_a_proposer_on_a_busy_chain_and_never_on_a_quiet_one(net):
    settings = AlertSettings.objects.create(chain=net, empty_blocks=3, cooldown_seconds=0)
    rotation = [A, B, C, D] * 20  # 80 heights, 20 turns each
    # A's last 5 blocks are empty; one block in 20 of the others is empty too (chance alone).
    _blocks(net, rotation, lambda h, a: 0 if (a == A and h > 60) or h % 20 == 2 else 4)
    found, cleared = performance.empty_blocks(net, settings, {}, set_size=4)
    assert [(f.kind, f.validator_id) for f in found] == [(AlertKind.EMPTY_BLOCKS, vid(net, A))]
    assert found[0].details["streak"] == 5 and "last 5 blocks were empty" in found[0].summary
    assert cleared == []

    stats = blocks.chain_blocks(net.pk, 80)
    assert stats.heights == 80 and stats.by_proposer[vid(net, A)].empty == 5
    assert stats.by_proposer[vid(net, B)].streak == 0  # B's latest block carried transactions

    # Its alert opens; its next block carries transactions: the alert resolves.
    apply(net, NOW, found, cleared, {})
    alert = Alert.objects.get(chain=net, kind=AlertKind.EMPTY_BLOCKS, is_open=True)
    Block.objects.create(chain=net, height=81, time=NOW, proposer_id=vid(net, A), txs=2, size=900)
    found, cleared = performance.empty_blocks(net, settings, {(alert.kind, alert.validator_id): alert}, set_size=4)
    assert found == [] and [c.validator_id for c in cleared] == [vid(net, A)]
    apply(net, NOW, found, cleared, {(alert.kind, alert.validator_id): alert})
    assert not Alert.objects.filter(chain=net, kind=AlertKind.EMPTY_BLOCKS, is_open=True).exists()


@pytest.mark.django_db
def test_a_chain_that_goes_quiet_alerts_nobody_and_a_gone_proposers_alert_resolves(net):
    settings = AlertSettings.objects.create(chain=net, empty_blocks=3, cooldown_seconds=0)
    # 184 busy heights, then traffic stops for everyone: 16 empty blocks, 4 from each proposer.
    _blocks(net, [A, B, C, D] * 50, lambda h, a: 0 if h > 184 else 5)
    assert performance.empty_blocks(net, settings, {}, set_size=4) == ([], [])
    # A young chain: a few blocks prove nothing, however empty A's are.
    Block.objects.filter(chain=net).delete()
    _blocks(net, [A, B, C, D] * 3, lambda h, a: 0 if a == A else 5)
    assert performance.empty_blocks(net, settings, {}, set_size=4) == ([], [])
    # An open alert of a validator that proposes no more (jailed, gone): resolved, not kept forever.
    Block.objects.filter(chain=net).delete()
    _blocks(net, [B, C, D] * 30, lambda h, a: 5)
    alert = Alert.objects.create(
        chain=net, kind=AlertKind.EMPTY_BLOCKS, validator_id=vid(net, A), severity=20, opened_at=NOW, updated_at=NOW
    )
    found, cleared = performance.empty_blocks(net, settings, {(alert.kind, alert.validator_id): alert}, set_size=4)
    assert found == [] and [(c.validator_id, c.note) for c in cleared] == [
        (vid(net, A), "no block of its in the window")
    ]


@pytest.mark.django_db
def test_a_quiet_chain_and_a_short_streak_alert_nobody(net):
    settings = AlertSettings.objects.create(chain=net, empty_blocks=3)
    # Every block empty (a localnet, a chain without traffic): a streak of 20 is the chain's, not A's.
    _blocks(net, [A, B, C, D] * 20, lambda h, a: 0)
    assert performance.empty_blocks(net, settings, {}, set_size=4) == ([], [])
    Block.objects.filter(chain=net).delete()
    # Half the others' blocks are empty: 5 in a row from A has a chance of 1/32, not an alert.
    _blocks(net, [A, B, C, D] * 20, lambda h, a: 0 if (a == A and h > 60) or (h - 1) // 4 % 2 == 0 else 1)
    assert performance.empty_blocks(net, settings, {}, set_size=4) == ([], [])
    settings.empty_blocks = 0  # off
    Block.objects.filter(chain=net).update(txs=5)
    Block.objects.filter(chain=net, proposer_id=vid(net, A)).update(txs=0)
    assert performance.empty_blocks(net, settings, {}, set_size=4) == ([], [])
    settings.empty_blocks = 3
    assert len(performance.empty_blocks(net, settings, {}, set_size=4)[0]) == 1


@pytest.mark.django_db
def test_block_metas_go_with_the_history_tier_and_with_their_chain(net):
    from analysis.retention import prune_history
    from consensus.retention import PruneReport, purge_chain

    ids = {v.address: v.pk for v in Validator.objects.filter(chain=net)}
    Block.objects.bulk_create(
        Block(chain=net, height=h, time=NOW - timedelta(days=100 - h), proposer_id=ids[A], txs=1, size=9)
        for h in range(1, 101)
    )
    report = PruneReport()
    prune_history(report, cutoff=NOW - timedelta(days=10, hours=1), chains=[net])
    assert report.deleted["consensus.Block"] == 89  # blocks 1..89 are older than the cut
    assert Block.objects.filter(chain=net).order_by("height").first().height == 90
    purge_chain(net)
    assert not Block.objects.filter(chain=net).exists()


def test_the_simulator_serves_blockchain_like_a_node(sim):
    from consensus.simulator import Scenario, SimChain
    from consensus.simulator.scenario import EmptyBlocks

    from .simhelpers import get, wait_for_height

    sim_chain = SimChain("sim-b", validators=4, block_time=0.05, scenario=Scenario(empty_blocks=[EmptyBlocks(2)]))
    (node,) = sim.add_chain(sim_chain)
    sim.start()
    wait_for_height(node.url, 30)
    last, metas = p.decode_blockchain(get(node.url, "/blockchain", minHeight=1, maxHeight=25).text)
    assert last >= 30
    assert [m.height for m in metas] == list(range(25, 5, -1))  # the latest 20 of the range, newest first
    for m in metas:
        rec = sim_chain.blocks[m.height]
        assert (m.proposer_address, m.num_txs) == (rec.proposer, rec.txs)
        empty = m.proposer_address == sim_chain.genesis[2].address
        assert (m.num_txs == 0) == (empty or m.height % 20 == 0)
    error = get(node.url, "/blockchain", minHeight=10**6, maxHeight=10**6 + 5)
    assert error.status_code == 500 and "can't be greater than max height" in error.text
