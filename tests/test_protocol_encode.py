"""The simulator's encoder writes frames byte for byte as the real node does."""

from __future__ import annotations

import pytest

from consensus import protocol as p
from consensus.protocol import encode

from .protocol_fixtures import frames, http, raw

CAPTURES = ["ws_frames_normal.jsonl", "ws_frames_one_down.jsonl", "ws_frames_recovery.jsonl", "ws_frames_halt.jsonl"]


def reencode(line: str) -> str | None:
    doc = raw(line)
    value = p.decode_frame(line)
    sub_id = doc.get("id")
    if isinstance(value, p.Vote):
        v = doc["result"]["data"]["value"]["Vote"]
        return encode.vote_frame(value, sub_id, timestamp_text=v["timestamp"], parts=v["block_id"]["parts"])
    if isinstance(value, p.NewRound):
        return encode.new_round_frame(value, sub_id)
    if isinstance(value, p.RoundStep):
        return encode.round_step_frame(value, sub_id)
    if isinstance(value, p.CompleteProposal):
        return encode.complete_proposal_frame(value, sub_id, parts=doc["result"]["data"]["value"]["block_id"]["parts"])
    if isinstance(value, p.SubscribeAck):
        return encode.ack_frame(sub_id)
    return None  # NewBlock carries app events the simulator does not invent


@pytest.mark.parametrize("name", CAPTURES)
def test_reencoded_frames_are_byte_identical(name):
    checked = 0
    for line in frames(name):
        again = reencode(line)
        if again is not None:
            assert again == line
            checked += 1
    assert checked > 20


def test_error_frames_are_byte_identical():
    checked = 0
    for line in frames("ws_frames_errors.jsonl"):
        value = p.decode_frame(line)
        if isinstance(value, p.RPCError):
            data = value.data if '"data"' in line else None
            assert encode.error_frame(value.request_id, value.code, value.message, data) == line
            checked += 1
    assert checked >= 3  # the capture holds the node's error replies: each was compared


def test_validators_reply_is_byte_identical():
    for name in ("http_validators.json", "http_validators_page1_per2.json", "http_validators_page2_per2.json"):
        page = p.decode_validators(http(name))
        assert encode.validators_reply(page.block_height, list(page.validators), page.total) == http(name).strip()
    assert (
        encode.http_error("page should be within [1, 2] range, given 3")
        == http("http_validators_bad_page.json").strip()
    )


def test_time_format_matches_go():
    from datetime import UTC, datetime

    from consensus.protocol.fields import format_time

    assert format_time(datetime(2026, 11, 28, 0, 4, 45, 19000, tzinfo=UTC)) == "2026-11-28T00:04:45.019Z"
    assert format_time(datetime(2026, 11, 28, 0, 4, 45, tzinfo=UTC)) == "2026-11-28T00:04:45Z"
    assert format_time(datetime(2026, 11, 28, tzinfo=UTC), nanos=18785153) == "2026-11-28T00:00:00.018785153Z"


def test_fast_vote_encoder_matches_the_generic_one():
    from datetime import UTC, datetime

    for block_hash, signature in ((bytes(range(32)), bytes(64)), (None, b"\x01" * 64), (b"\xff" * 32, None)):
        v = p.Vote(
            height=123456789,
            round=2,
            type=p.PRECOMMIT,
            block_hash=block_hash,
            timestamp=datetime(2026, 11, 28, 0, 4, 20, 218807, tzinfo=UTC),
            validator_address="AB" * 20,
            validator_index=17,
            signature=signature,
        )
        for sub_id in (2, 17, "abc"):
            assert encode.vote_frame(v, sub_id) == encode.vote_frame_generic(v, sub_id)
            assert p.decode_frame(encode.vote_frame(v, sub_id)) == v
