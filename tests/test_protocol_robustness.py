"""Old node versions, absurd values, and arbitrary mutations of real frames: decoders answer with a
value or the module's own error, never anything else."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus import protocol as p
from consensus.protocol.stream import KIND_FRAME, StreamEntry, decode_entry

from .protocol_fixtures import all_frames, frames, http, raw

VOTE = frames("ws_frames_normal.jsonl")[
    next(i for i, f in enumerate(frames("ws_frames_normal.jsonl")) if '"Vote"' in f and "tendermint/event/Vote" in f)
]


def mutate_vote(**changes) -> str:
    doc = raw(VOTE)
    vote = doc["result"]["data"]["value"]["Vote"]
    for key, value in changes.items():
        if value is ...:
            vote.pop(key)
        else:
            vote[key] = value
    return json.dumps(doc)


def test_older_encodings_int32_as_strings_and_no_extension():
    # Tendermint before v0.34 sent int32 fields as strings; v0.34/v0.37 have no extension fields.
    v = p.decode_frame(mutate_vote(round="3", validator_index="2", extension=..., extension_signature=...))
    assert (v.round, v.validator_index, v.has_extension) == (3, 2, False)


def test_vote_extension_present():
    v = p.decode_frame(mutate_vote(extension="AQID", extension_signature="BAUG"))
    assert v.has_extension


def test_nil_vote():
    v = p.decode_frame(mutate_vote(block_id={"hash": "", "parts": {"total": 0, "hash": ""}}))
    assert v.is_nil and v.block_hash is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"height": "-5"}, "Vote.height: -5 is out of range"),
        ({"height": "0"}, "Vote.height: 0 is out of range"),
        ({"height": "99999999999999999999"}, "Vote.height"),
        ({"round": 40000}, "Vote.round: 40000 is out of range"),
        ({"round": -1}, "Vote.round"),
        ({"type": 32}, "Vote.type: 32 is out of range"),
        ({"validator_index": -1}, "Vote.validator_index"),
        ({"validator_address": "XYZ"}, "Vote.validator_address: not hex"),
        ({"validator_address": "ABCD"}, "Vote.validator_address: expected 20 bytes"),
        ({"signature": "!!!"}, "Vote.signature: not base64"),
        ({"timestamp": "yesterday"}, "Vote.timestamp: not an RFC 3339 time"),
        ({"height": True}, "Vote.height: expected an integer, got a boolean"),
        ({"height": ...}, "Vote.height is missing"),
        ({"block_id": {"hash": "ABCD", "parts": {}}}, "Vote.block_id.hash: expected 32 bytes"),
    ],
)
def test_absurd_and_missing_values_are_named(changes, message):
    with pytest.raises(p.ProtocolError, match=message.replace("(", r"\(")):
        p.decode_frame(mutate_vote(**changes))


def test_malformed_and_unknown():
    with pytest.raises(p.MalformedFrame, match="not JSON"):
        p.decode_frame('{"jsonrpc":"2.0",')
    with pytest.raises(p.MalformedFrame, match="expected a JSON-RPC object"):
        p.decode_frame("[1,2]")
    with pytest.raises(p.UnknownEventType, match="tendermint/event/Tx"):
        p.decode_frame(
            '{"jsonrpc":"2.0","id":9,"result":{"query":"x","data":{"type":"tendermint/event/Tx","value":{}}}}'
        )
    with pytest.raises(p.MalformedFrame):
        p.decode_frame(b"\xff\xfe")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("subscription was canceled (reason: CometBFT exited)", "CometBFT exited"),
        (
            "subscription was canceled (reason: internal subscription event buffer is out of capacity)",
            "internal subscription event buffer is out of capacity",
        ),
        ("subscription was cancelled (reason: Tendermint exited)", "Tendermint exited"),  # v0.34 spelling
        (
            "subscription was cancelled (reason: client is not pulling messages fast enough)",
            "client is not pulling messages fast enough",
        ),
    ],
)
def test_subscription_cancelled_both_spellings(data, reason):
    frame = json.dumps({"jsonrpc": "2.0", "id": 2, "error": {"code": -32000, "message": "Server error", "data": data}})
    err = p.decode_frame(frame)
    assert isinstance(err, p.RPCError)
    assert err.kind is p.RPCErrorKind.SUBSCRIPTION_CANCELLED and err.reason == reason and err.request_id == 2


def test_v034_new_block_shape_without_block_id():
    doc = raw(next(f for f in frames("ws_frames_normal.jsonl") if "tendermint/event/NewBlock" in f))
    value = doc["result"]["data"]["value"]
    value.pop("block_id")
    value.pop("result_finalize_block")
    value["result_begin_block"] = {}
    value["result_end_block"] = {"validator_updates": []}
    block = p.decode_frame(json.dumps(doc))
    assert isinstance(block, p.NewBlock) and block.block_hash is None and block.last_commit is not None


def test_height_unavailable_error_is_classified():
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": -1,
            "error": {
                "code": -32603,
                "message": "Internal error",
                "data": "height 100 must be less than or equal to the current blockchain height 40",
            },
        }
    )
    with pytest.raises(p.RPCError) as err:
        p.decode_block(body)
    assert err.value.kind is p.RPCErrorKind.HEIGHT_UNAVAILABLE


def test_stream_entry_round_trip_and_errors():
    entry = StreamEntry(
        kind=KIND_FRAME,
        chain="osmosis",
        received_ns=1_795_824_259_359_388_000,
        payload=VOTE.encode(),
        endpoint="http://127.0.0.1:26657",
    )
    assert decode_entry(entry.to_fields()) == entry
    with pytest.raises(p.ProtocolError, match="missing"):
        decode_entry({b"k": b"frame"})
    with pytest.raises(p.ProtocolError, match="unknown"):
        decode_entry({**entry.to_fields(), b"k": b"nonsense"})
    with pytest.raises(p.ProtocolError):
        decode_entry({**entry.to_fields(), b"t": b"soon"})


# --- property-based: arbitrary mutations of real frames ---

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
REAL = all_frames()
HTTP = [
    http(n)
    for n in (
        "http_status.json",
        "http_validators.json",
        "http_block.json",
        "http_commit.json",
        "http_commit_one_down.json",
        "http_block_one_down.json",
    )
]
HTTP_DECODERS = [
    p.decode_status,
    p.decode_validators,
    p.decode_block,
    p.decode_commit,
    p.decode_commit,
    p.decode_block,
]


def paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, (*prefix, i))


def replace_at(doc, path, value, delete=False):
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = value
    return doc


def decode_only_protocol_errors(decoder, text):
    # The module's own error is allowed; any other exception fails the test.
    with contextlib.suppress(p.ProtocolError):
        decoder(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_structural_mutations_of_real_frames(data):
    frame = data.draw(st.sampled_from(REAL))
    doc = json.loads(frame)
    path = data.draw(st.sampled_from(list(paths(doc))))
    value = data.draw(JSON_VALUES)
    delete = data.draw(st.booleans())
    decode_only_protocol_errors(p.decode_frame, json.dumps(replace_at(doc, path, value, delete)))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_byte_mutations_of_real_frames(data):
    frame = data.draw(st.sampled_from(REAL)).encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(frame)))
    noise = data.draw(st.binary(max_size=8))
    decode_only_protocol_errors(p.decode_frame, frame[:cut] + noise + frame[cut + len(noise) :])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_structural_mutations_of_real_http_replies(data):
    i = data.draw(st.integers(min_value=0, max_value=len(HTTP) - 1))
    doc = json.loads(HTTP[i])
    path = data.draw(st.sampled_from(list(paths(doc))))
    value = data.draw(JSON_VALUES)
    decode_only_protocol_errors(HTTP_DECODERS[i], json.dumps(replace_at(doc, path, value, data.draw(st.booleans()))))


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_fast_vote_path_agrees_with_the_checked_path(data):
    from consensus.protocol.websocket import _fast_vote, checked_vote

    votes = [json.loads(f)["result"]["data"]["value"]["Vote"] for f in REAL if "tendermint/event/Vote" in f]
    v = data.draw(st.sampled_from(votes))
    key = data.draw(st.sampled_from(sorted(v)))
    mutated = dict(v)
    mutated[key] = data.draw(
        JSON_VALUES
        | st.sampled_from(
            [
                "0",
                "1",
                "-1",
                "",
                " 12",
                "\uff11\uff12",
                "\u00b2",
                "AB" * 20,
                "ab" * 20,
                "A B" * 13 + "A",
                "2026-11-28T00:04:20.218807673Z",
                "2026-11-28T00:04:2 .218807673Z",
                "2026-11-28T00:04:20Z",
                "2026-11-28T00:04:20.5Z",
                "2026-11-28T00:04:20.Z",
                "2026-11-28T00:04:20.1234567890Z",
                "2026-13-28T00:04:20.5Z",
                "2026-02-30T00:04:20Z",
                "2026-11-28T24:00:00Z",
                "+123",
            ]
        )
    )
    fast = _fast_vote(mutated)
    try:
        checked = checked_vote(mutated)
    except p.ProtocolError:
        assert fast is None
    else:
        assert fast is None or fast == checked


@pytest.mark.parametrize("digits", range(10))
def test_fast_vote_path_takes_every_go_rfc3339nano_fraction(digits):
    """Go drops trailing zeros of the nanoseconds (none at all on a whole second): the fast path
    must take every such timestamp, and agree with the checked path on it."""
    from consensus.protocol.websocket import _fast_vote, checked_vote

    vote = next(json.loads(f)["result"]["data"]["value"]["Vote"] for f in REAL if "tendermint/event/Vote" in f)
    stamp = "2026-11-28T00:04:20" + ("." + "987654321"[:digits] if digits else "") + "Z"
    fast = _fast_vote({**vote, "timestamp": stamp})
    assert fast is not None and fast == checked_vote({**vote, "timestamp": stamp})
    assert fast.timestamp.microsecond == int("987654321"[: min(digits, 6)].ljust(6, "0"))
