"""Every real frame and reply captured from a CometBFT v1.0.1 localnet decodes to the right values."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from consensus import protocol as p

from .protocol_fixtures import ADDRESSES, VAL0, VAL1, VAL2, VAL3, WS_FILES, frames, http


def decoded(name: str) -> list:
    return [p.decode_frame(line) for line in frames(name)]


def count_types(values: list) -> Counter:
    return Counter(type(v).__name__ for v in values)


@pytest.mark.parametrize("name", WS_FILES)
def test_every_captured_frame_decodes(name):
    values = decoded(name)
    assert len(values) == len(frames(name))
    assert all(not isinstance(v, p.ProtocolError) or isinstance(v, p.RPCError) for v in values)


def test_normal_capture_counts_and_values():
    values = decoded("ws_frames_normal.jsonl")
    assert count_types(values) == Counter(
        Vote=78, RoundStep=51, NewRound=11, CompleteProposal=10, NewBlock=10, SubscribeAck=5
    )
    votes = [v for v in values if isinstance(v, p.Vote)]
    assert {v.validator_address for v in votes} == set(ADDRESSES)
    assert all(not v.is_nil for v in votes)
    for v in votes:  # validator_index is the position in /validators order
        assert ADDRESSES[v.validator_index] == v.validator_address
    first = votes[0]
    assert (first.height, first.round, first.type) == (11, 0, p.PREVOTE)
    assert first.block_hash.hex().upper() == "A606D45CC34E8DAE934277ED5A734A2B5A639E9EC83A0CA74FB923BA103020CE"
    assert first.validator_address == VAL3 and first.validator_index == 2
    assert first.timestamp == datetime(2026, 11, 28, 0, 4, 20, 218807, tzinfo=UTC)
    assert len(first.signature) == 64
    rounds = [v for v in values if isinstance(v, p.NewRound)]
    assert [r.height for r in rounds] == list(range(11, 22))
    assert all(r.round == 0 for r in rounds)
    assert rounds[0].proposer_address == VAL3 and rounds[0].proposer_index == 2
    steps = {v.step_name for v in values if isinstance(v, p.RoundStep)}
    assert {"RoundStepPropose", "RoundStepPrevote", "RoundStepPrecommit", "RoundStepCommit"} <= steps
    blocks = [v for v in values if isinstance(v, p.NewBlock)]
    assert [b.height for b in blocks] == list(range(11, 21))
    for b in blocks:
        assert b.last_commit.height == b.height - 1
        assert [s.flag for s in b.last_commit.signatures].count(p.FLAG_COMMIT) >= 3


def test_one_validator_down_capture():
    values = decoded("ws_frames_one_down.jsonl")
    votes = [v for v in values if isinstance(v, p.Vote)]
    assert VAL2 not in {v.validator_address for v in votes}
    assert sum(v.is_nil for v in votes) == 12
    # val2 proposed 26 and 30: round 0 timed out with nil votes, round 1 committed.
    for h in (26, 30):
        nil_round0 = [v for v in votes if v.height == h and v.round == 0]
        assert nil_round0 and all(v.is_nil for v in nil_round0)
        assert any(r.height == h and r.round == 1 for r in values if isinstance(r, p.NewRound))
    for b in (v for v in values if isinstance(v, p.NewBlock)):
        assert b.last_commit.signatures[1].flag == p.FLAG_ABSENT
        assert b.last_commit.signatures[1].timestamp is None


def test_halt_capture_ends_in_nil_prevotes_at_35():
    values = decoded("ws_frames_halt.jsonl")
    new_rounds = [v for v in values if isinstance(v, p.NewRound)]
    assert (new_rounds[-1].height, new_rounds[-1].round, new_rounds[-1].proposer_address) == (35, 0, VAL3)
    last_votes = [v for v in values if isinstance(v, p.Vote) and v.height == 35]
    assert {v.validator_address for v in last_votes} == {VAL1, VAL0}
    assert all(v.is_nil and v.type == p.PREVOTE for v in last_votes)
    assert count_types(decoded("ws_frames_halt_steady.jsonl")) == Counter(SubscribeAck=5)


def test_recovery_capture_has_prevote_wait_then_round_1():
    values = decoded("ws_frames_recovery.jsonl")
    steps = [(s.height, s.round, s.step_name) for s in values if isinstance(s, p.RoundStep)]
    assert (35, 0, "RoundStepPrevoteWait") in steps
    assert any(h == 35 and r == 1 for h, r, _ in steps)
    assert {b.height for b in values if isinstance(b, p.NewBlock)} == set(range(35, 46))


def test_error_replies_are_typed_values():
    values = decoded("ws_frames_errors.jsonl")
    errors = {v.request_id: v for v in values if isinstance(v, p.RPCError)}
    assert errors[5].kind is p.RPCErrorKind.SUBSCRIPTION_LIMIT
    assert errors[7].kind is p.RPCErrorKind.ALREADY_SUBSCRIBED
    assert errors[8].kind is p.RPCErrorKind.BAD_QUERY
    assert errors[9].kind is p.RPCErrorKind.SUBSCRIPTION_NOT_FOUND
    assert errors[10].kind is p.RPCErrorKind.METHOD_NOT_FOUND and errors[10].code == -32601
    assert "max_subscriptions_per_client 5 reached" in str(errors[5])
    acks = [v.request_id for v in values if isinstance(v, p.SubscribeAck)]
    assert acks == [0, 1, 2, 3, 4, 6, 11]


def test_status_replies():
    s = p.decode_status(http("http_status.json"))
    assert (s.chain_id, s.node_version, s.latest_height, s.catching_up) == ("injective-777", "1.0.1", 10, False)
    assert s.latest_block_time == datetime(2026, 11, 28, 0, 4, 18, 167434, tzinfo=UTC)
    halted = p.decode_status(http("http_status_halt.json"))
    assert halted.latest_height == 34 and not halted.catching_up


def test_validator_pages():
    full = p.decode_validators(http("http_validators.json"))
    assert [v.address for v in full.validators] == ADDRESSES
    assert (full.count, full.total, full.block_height) == (4, 4, 11)
    assert all(v.voting_power == 1000 and v.pub_key_type == "tendermint/PubKeyEd25519" for v in full.validators)
    page1 = p.decode_validators(http("http_validators_page1_per2.json"))
    page2 = p.decode_validators(http("http_validators_page2_per2.json"))
    assert [v.address for v in page1.validators + page2.validators] == ADDRESSES
    assert page1.total == page2.total == 4 and page1.count == 2
    with pytest.raises(p.RPCError) as err:
        p.decode_validators(http("http_validators_bad_page.json"))
    assert err.value.kind is p.RPCErrorKind.PAGE_OUT_OF_RANGE and err.value.code == -32603


def test_commits_and_blocks():
    seen = p.decode_commit(http("http_commit.json"))
    assert seen.canonical is False and seen.height == 10
    assert seen.signatures[2].flag == p.FLAG_ABSENT  # val3 was up: the non-canonical commit lies
    canonical = p.decode_commit(http("http_commit_canonical.json"))
    assert canonical.canonical is True and [s.flag for s in canonical.signatures] == [2, 2, 2, 2]
    assert [s.validator_address for s in canonical.signatures] == ADDRESSES
    block = p.decode_block(http("http_block.json"))
    assert block.height == 9 and block.last_commit.height == 8 and block.chain_id == "injective-777"
    assert [s.flag for s in block.last_commit.signatures] == [2, 2, 2, 2]
    down = p.decode_block(http("http_block_one_down.json"))
    assert down.height == 32 and down.last_commit.height == 31
    assert down.last_commit.signatures[1] == p.CommitSig(flag=1, validator_address="", timestamp=None, signature=None)
    assert [s.flag for s in p.decode_commit(http("http_commit_one_down.json")).signatures] == [2, 1, 2, 2]
