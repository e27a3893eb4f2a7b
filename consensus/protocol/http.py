"""HTTP JSON-RPC replies: /status, /validators, /block, /commit, /consensus_state."""

from __future__ import annotations

import json
import re
from typing import Any

from . import fields as f
from .errors import BadValue, MalformedFrame, ProtocolError
from .values import (
    Block,
    Commit,
    CommitSig,
    ConsensusState,
    NetInfo,
    RoundVotes,
    Status,
    ValidatorInfo,
    ValidatorsPage,
)
from .websocket import rpc_error

_BIT_ARRAY_POWER = re.compile(r"(\d+)/(\d+) = ")


def unwrap(body: str | bytes) -> dict:
    """The `result` of a JSON-RPC reply; an error reply is raised as RPCError."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedFrame(f"reply is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedFrame("reply is not a JSON-RPC object")
    if doc.get("error") is not None:
        raise rpc_error(doc)
    if "result" not in doc:
        raise MalformedFrame("reply has neither result nor error")
    return f.obj(doc["result"], "result")


def _guard(fn):
    """Anything unexpected inside a decoder becomes a ProtocolError, never a crash."""

    def wrapper(body: str | bytes):
        try:
            return fn(unwrap(body))
        except ProtocolError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:  # pragma: no cover
            raise MalformedFrame(f"undecodable {fn.__name__} reply: {exc!r}") from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_guard
def decode_status(result: dict) -> Status:
    node = f.obj(f.get(result, "node_info", "status"), "node_info")
    sync = f.obj(f.get(result, "sync_info", "status"), "sync_info")
    latest_time = f.timestamp(f.get(sync, "latest_block_time", "sync_info"), "sync_info.latest_block_time")
    catching_up = f.get(sync, "catching_up", "sync_info")
    if not isinstance(catching_up, bool):
        raise BadValue("sync_info.catching_up: expected a boolean")
    assert latest_time is not None
    return Status(
        chain_id=f.string(f.get(node, "network", "node_info"), "node_info.network"),
        node_version=f.string(node.get("version", ""), "node_info.version"),
        moniker=f.string(node.get("moniker", ""), "node_info.moniker"),
        latest_height=f.height(
            f.get(sync, "latest_block_height", "sync_info"), "sync_info.latest_block_height", allow_zero=True
        ),
        latest_block_time=latest_time,
        earliest_height=f.height(
            sync.get("earliest_block_height", "0"), "sync_info.earliest_block_height", allow_zero=True
        ),
        catching_up=catching_up,
    )


@_guard
def decode_validators(result: dict) -> ValidatorsPage:
    raw = f.get(result, "validators", "validators")
    if not isinstance(raw, list):
        raise BadValue("validators: expected a list")
    items = []
    for i, item in enumerate(raw):
        p = f"validators[{i}]"
        address, pub_type, pub_key, power = f.validator_entry(item, p)
        priority = item.get("proposer_priority", "0")  # validator_entry checked it is an object
        items.append(
            ValidatorInfo(
                address=address,
                pub_key_type=pub_type,
                pub_key=pub_key,
                voting_power=power,
                proposer_priority=f.integer(priority, f"{p}.proposer_priority", lo=-f.INT64_MAX - 1, hi=f.INT64_MAX),
            )
        )
    count = f.integer(f.get(result, "count", "validators"), "count", lo=0, hi=f.MAX_VALIDATORS)
    total = f.integer(f.get(result, "total", "validators"), "total", lo=0, hi=f.MAX_VALIDATORS)
    if count != len(items):
        raise BadValue(f"validators: count says {count} but {len(items)} listed")
    return ValidatorsPage(
        block_height=f.height(f.get(result, "block_height", "validators"), "block_height"),
        validators=tuple(items),
        count=count,
        total=total,
    )


def decode_commit_body(c: dict, path: str) -> Commit:
    raw = f.get(c, "signatures", path)
    if not isinstance(raw, list):
        raise BadValue(f"{path}.signatures: expected a list")
    sigs = []
    for i, s in enumerate(raw):
        p = f"{path}.signatures[{i}]"
        s = f.obj(s, p)
        flag = f.integer(f.get(s, "block_id_flag", p), f"{p}.block_id_flag", lo=1, hi=3)
        sigs.append(
            CommitSig(
                flag=flag,
                validator_address=f.address(s.get("validator_address", ""), f"{p}.validator_address", allow_empty=True),
                timestamp=f.timestamp(s.get("timestamp", f.ZERO_TIME), f"{p}.timestamp", allow_zero=True),
                signature=f.b64(s.get("signature"), f"{p}.signature"),
            )
        )
    block_id = f.obj(c.get("block_id", {}), f"{path}.block_id")
    return Commit(
        height=f.height(f.get(c, "height", path), f"{path}.height", allow_zero=True),
        round=f.round_(f.get(c, "round", path), f"{path}.round"),
        block_hash=f.hex_bytes(block_id.get("hash", ""), f"{path}.block_id.hash", size=32),
        signatures=tuple(sigs),
    )


def decode_block_body(value: dict, path: str) -> Block:
    """A block with its id: the /block result, or a NewBlock event's value."""
    block = f.obj(f.get(value, "block", path), f"{path}.block")
    header = f.obj(f.get(block, "header", f"{path}.block"), f"{path}.block.header")
    hp = f"{path}.block.header"
    last_commit_raw: Any = block.get("last_commit")
    last_commit = None
    if last_commit_raw is not None:
        last_commit = decode_commit_body(f.obj(last_commit_raw, f"{path}.last_commit"), f"{path}.last_commit")
        if last_commit.height == 0:
            last_commit = None  # height 1 carries an empty commit of "height 0"
    block_id = value.get("block_id")
    block_hash = None
    if block_id is not None:
        block_hash = f.hex_bytes(f.obj(block_id, f"{path}.block_id").get("hash", ""), f"{path}.block_id.hash", size=32)
    time = f.timestamp(f.get(header, "time", hp), f"{hp}.time")
    assert time is not None
    return Block(
        height=f.height(f.get(header, "height", hp), f"{hp}.height"),
        time=time,
        chain_id=f.string(header.get("chain_id", ""), f"{hp}.chain_id"),
        proposer_address=f.address(f.get(header, "proposer_address", hp), f"{hp}.proposer_address"),
        block_hash=block_hash,
        last_commit=last_commit,
    )


@_guard
def decode_block(result: dict) -> Block:
    return decode_block_body(result, "block")


@_guard
def decode_commit(result: dict) -> Commit:
    header = f.obj(f.get(result, "signed_header", "commit"), "signed_header")
    commit = decode_commit_body(f.obj(f.get(header, "commit", "signed_header"), "commit"), "commit")
    canonical = result.get("canonical")
    if not isinstance(canonical, bool):
        raise BadValue("commit.canonical: expected a boolean")
    return Commit(commit.height, commit.round, commit.block_hash, commit.signatures, canonical=canonical)


def _power(bit_array: Any, path: str) -> tuple[int, int]:
    m = _BIT_ARRAY_POWER.search(f.string(bit_array, path))
    if not m:
        raise BadValue(f"{path}: no power in {bit_array!r:.60}")
    return int(m.group(1)), int(m.group(2))


@_guard
def decode_consensus_state(result: dict) -> ConsensusState:
    rs = f.obj(f.get(result, "round_state", "consensus_state"), "round_state")
    hrs = f.string(f.get(rs, "height/round/step", "round_state"), "round_state.height/round/step")
    parts = hrs.split("/")
    if len(parts) != 3:
        raise BadValue(f"round_state.height/round/step: {hrs!r:.40}")
    rounds = []
    for i, r in enumerate(rs.get("height_vote_set") or []):
        p = f"round_state.height_vote_set[{i}]"
        r = f.obj(r, p)
        pre_power, total = _power(f.get(r, "prevotes_bit_array", p), f"{p}.prevotes_bit_array")
        com_power, _ = _power(f.get(r, "precommits_bit_array", p), f"{p}.precommits_bit_array")
        rounds.append(
            RoundVotes(
                round=f.round_(f.get(r, "round", p), f"{p}.round"),
                prevotes=tuple(None if v == "nil-Vote" else f.string(v, p) for v in f.get(r, "prevotes", p)),
                precommits=tuple(None if v == "nil-Vote" else f.string(v, p) for v in f.get(r, "precommits", p)),
                prevotes_power=pre_power,
                precommits_power=com_power,
                total_power=total,
            )
        )
    proposer = rs.get("proposer")
    start = rs.get("start_time")
    return ConsensusState(
        height=f.height(parts[0], "round_state.height"),
        round=f.round_(parts[1], "round_state.round"),
        step=f.integer(parts[2], "round_state.step", lo=1, hi=8),
        start_time=f.timestamp(start, "round_state.start_time") if start else None,
        proposer_address=f.address(f.obj(proposer, "proposer").get("address", ""), "proposer.address", allow_empty=True)
        or None
        if proposer
        else None,
        rounds=tuple(rounds),
    )


@_guard
def decode_dump_consensus_state(result: dict) -> ConsensusState:
    """/dump_consensus_state: the round state with numeric fields (height string, round and step numbers)."""
    rs = f.obj(f.get(result, "round_state", "dump_consensus_state"), "round_state")
    validators = f.obj(rs.get("validators") or {}, "round_state.validators")
    proposer = validators.get("proposer")
    start = rs.get("start_time")
    return ConsensusState(
        height=f.height(f.get(rs, "height", "round_state"), "round_state.height"),
        round=f.round_(f.get(rs, "round", "round_state"), "round_state.round"),
        step=f.integer(f.get(rs, "step", "round_state"), "round_state.step", lo=1, hi=8),
        start_time=f.timestamp(start, "round_state.start_time") if start else None,
        proposer_address=f.address(f.obj(proposer, "proposer").get("address", ""), "proposer.address") or None
        if proposer
        else None,
    )


@_guard
def decode_net_info(result: dict) -> NetInfo:
    peers = f.get(result, "peers", "net_info")
    if not isinstance(peers, list):
        raise BadValue("net_info.peers: expected a list")
    monikers = []
    for i, peer in enumerate(peers):
        info = f.obj(f.obj(peer, f"peers[{i}]").get("node_info", {}), f"peers[{i}].node_info")
        monikers.append(f.string(info.get("moniker", ""), f"peers[{i}].node_info.moniker"))
    return NetInfo(
        listening=bool(result.get("listening")),
        n_peers=f.integer(f.get(result, "n_peers", "net_info"), "net_info.n_peers", lo=0, hi=100_000),
        peer_monikers=tuple(monikers),
    )
