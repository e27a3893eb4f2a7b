"""Frames and replies as CometBFT v1.0 writes them, byte for byte (compact JSON, same key order).

Used by the built-in simulator; the tests re-encode real captured frames and compare bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from .fields import ZERO_TIME, format_time
from .values import (
    FLAG_ABSENT,
    STEP_NAMES,
    Commit,
    CompleteProposal,
    NewRound,
    RoundStep,
    ValidatorInfo,
    Vote,
)

_COMPACT = (",", ":")
EMPTY_HASH = hashlib.sha256(b"").hexdigest().upper()


def dumps(doc: Any) -> str:
    return json.dumps(doc, separators=_COMPACT, ensure_ascii=False)


@lru_cache(maxsize=1024)
def parts_for(block_hash: bytes | None) -> dict:
    """A part-set header for a block (the simulator's blocks have one part, as small blocks do)."""
    if not block_hash:
        return {"total": 0, "hash": ""}
    return {"total": 1, "hash": hashlib.sha256(b"parts" + block_hash).hexdigest().upper()}


def block_id(block_hash: bytes | None, parts: dict | None = None) -> dict:
    return {"hash": block_hash.hex().upper() if block_hash else "", "parts": parts or parts_for(block_hash)}


def _b64(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode() if raw is not None else None


def event_frame(sub_id: int, query: str, event_type: str, value: dict, events: dict | None = None) -> str:
    short = event_type.rsplit("/", 1)[-1]
    return dumps(
        {
            "jsonrpc": "2.0",
            "id": sub_id,
            "result": {
                "query": query,
                "data": {"type": event_type, "value": value},
                "events": events or {"tm.event": [query.split("'")[1] if "'" in query else short]},
            },
        }
    )


def vote_frame(v: Vote, sub_id: int, *, timestamp_text: str | None = None, parts: dict | None = None) -> str:
    # Hand-assembled (the load simulator sends tens of thousands a second); the tests check it
    # byte for byte against real captures and against the generic encoder.
    if v.block_hash:
        p = parts or parts_for(v.block_hash)
        block = f'{{"hash":"{v.block_hash.hex().upper()}","parts":{{"total":{p["total"]},"hash":"{p["hash"]}"}}}}'
    else:
        block = '{"hash":"","parts":{"total":0,"hash":""}}'
    signature = f'"{base64.b64encode(v.signature).decode()}"' if v.signature is not None else "null"
    return (
        f'{{"jsonrpc":"2.0","id":{json.dumps(sub_id)},"result":{{"query":"tm.event=\'Vote\'",'
        f'"data":{{"type":"tendermint/event/Vote","value":{{"Vote":{{"type":{v.type},"height":"{v.height}",'
        f'"round":{v.round},"block_id":{block},"timestamp":"{timestamp_text or format_time(v.timestamp)}",'
        f'"validator_address":"{v.validator_address}","validator_index":{v.validator_index},'
        f'"signature":{signature},"extension":null,"extension_signature":null}}}}}},'
        f'"events":{{"tm.event":["Vote"]}}}}}}'
    )


def vote_frame_generic(v: Vote, sub_id: int) -> str:
    """The same frame through json.dumps (the reference the fast path is tested against)."""
    value = {
        "Vote": {
            "type": v.type,
            "height": str(v.height),
            "round": v.round,
            "block_id": block_id(v.block_hash),
            "timestamp": format_time(v.timestamp),
            "validator_address": v.validator_address,
            "validator_index": v.validator_index,
            "signature": _b64(v.signature),
            "extension": None,
            "extension_signature": None,
        }
    }
    return event_frame(sub_id, "tm.event='Vote'", "tendermint/event/Vote", value)


def new_round_frame(e: NewRound, sub_id: int) -> str:
    value: dict[str, Any] = {"height": str(e.height), "round": e.round, "step": "RoundStepNewRound"}
    if e.proposer_address is not None:
        value["proposer"] = {"address": e.proposer_address, "index": e.proposer_index}
    return event_frame(sub_id, "tm.event='NewRound'", "tendermint/event/NewRound", value)


def round_step_frame(e: RoundStep, sub_id: int) -> str:
    value = {"height": str(e.height), "round": e.round, "step": STEP_NAMES[e.step]}
    return event_frame(sub_id, "tm.event='NewRoundStep'", "tendermint/event/RoundState", value)


def complete_proposal_frame(e: CompleteProposal, sub_id: int, *, parts: dict | None = None) -> str:
    value = {
        "height": str(e.height),
        "round": e.round,
        "step": STEP_NAMES[e.step],
        "block_id": block_id(e.block_hash, parts),
    }
    return event_frame(sub_id, "tm.event='CompleteProposal'", "tendermint/event/CompleteProposal", value)


def ack_frame(request_id: int | str | None) -> str:
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": {}})


def error_frame(request_id: int | str | None, code: int, message: str, data: str | None = None) -> str:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return dumps({"jsonrpc": "2.0", "id": request_id, "error": err})


def cancelled_frame(sub_id: int, reason: str = "CometBFT exited") -> str:
    return error_frame(sub_id, -32000, "Server error", f"subscription was canceled (reason: {reason})")


# --- HTTP replies (GET requests are answered with id -1) ---


def http_result(result: dict) -> str:
    return dumps({"jsonrpc": "2.0", "id": -1, "result": result})


def http_error(data: str, code: int = -32603, message: str = "Internal error") -> str:
    return dumps({"jsonrpc": "2.0", "id": -1, "error": {"code": code, "message": message, "data": data}})


def status_reply(
    *,
    chain_id: str,
    moniker: str,
    node_id: str,
    listen_port: int,
    latest_hash: bytes,
    latest_height: int,
    latest_time: datetime,
    earliest_hash: bytes,
    earliest_time: datetime,
    validator: ValidatorInfo | None,
    catching_up: bool = False,
) -> str:
    return http_result(
        {
            "node_info": {
                "protocol_version": {"p2p": "9", "block": "11", "app": "0"},
                "id": node_id,
                "listen_addr": f"127.0.0.1:{listen_port}",
                "network": chain_id,
                "version": "1.0.1",
                "channels": "40202122233031386061",
                "moniker": moniker,
                "other": {"tx_index": "on", "rpc_address": f"tcp://127.0.0.1:{listen_port}"},
            },
            "sync_info": {
                "latest_block_hash": latest_hash.hex().upper(),
                "latest_app_hash": hashlib.sha256(b"app" + latest_hash).hexdigest().upper(),
                "latest_block_height": str(latest_height),
                "latest_block_time": format_time(latest_time),
                "earliest_block_hash": earliest_hash.hex().upper(),
                "earliest_app_hash": EMPTY_HASH,
                "earliest_block_height": "1",
                "earliest_block_time": format_time(earliest_time),
                "catching_up": catching_up,
            },
            "validator_info": {
                "address": validator.address if validator else "",
                "pub_key": {"type": validator.pub_key_type, "value": validator.pub_key} if validator else None,
                "voting_power": str(validator.voting_power) if validator else "0",
            },
        }
    )


def validators_reply(height: int, page: list[ValidatorInfo], total: int) -> str:
    return http_result(
        {
            "block_height": str(height),
            "validators": [
                {
                    "address": v.address,
                    "pub_key": {"type": v.pub_key_type, "value": v.pub_key},
                    "voting_power": str(v.voting_power),
                    "proposer_priority": str(v.proposer_priority),
                }
                for v in page
            ],
            "count": str(len(page)),
            "total": str(total),
        }
    )


def commit_doc(c: Commit) -> dict:
    return {
        "height": str(c.height),
        "round": c.round,
        "block_id": block_id(c.block_hash),
        "signatures": [
            {
                "block_id_flag": s.flag,
                "validator_address": s.validator_address,
                "timestamp": format_time(s.timestamp) if s.timestamp else ZERO_TIME,
                "signature": _b64(s.signature) if s.flag != FLAG_ABSENT else None,
            }
            for s in c.signatures
        ],
    }


def header_doc(
    *,
    chain_id: str,
    height: int,
    time: datetime,
    last_block_hash: bytes | None,
    proposer: str,
    data_hash: bytes | None = None,
) -> dict:
    h = hashlib.sha256(f"{chain_id}/{height}".encode()).hexdigest().upper()
    return {
        "version": {"block": "11"},
        "chain_id": chain_id,
        "height": str(height),
        "time": format_time(time),
        "last_block_id": block_id(last_block_hash),
        "last_commit_hash": h,
        "data_hash": data_hash.hex().upper() if data_hash else EMPTY_HASH,
        "validators_hash": h,
        "next_validators_hash": h,
        "consensus_hash": h,
        "app_hash": h,
        "last_results_hash": EMPTY_HASH,
        "evidence_hash": EMPTY_HASH,
        "proposer_address": proposer,
    }


def blockchain_reply(last_height: int, metas: list[tuple[bytes, dict, int, int]]) -> str:
    """/blockchain: `metas` of (block hash, header doc, transactions, size), newest first."""
    return http_result(
        {
            "last_height": str(last_height),
            "block_metas": [
                {"block_id": block_id(h), "block_size": str(size), "header": header, "num_txs": str(txs)}
                for h, header, txs, size in metas
            ],
        }
    )


def block_reply(*, block_hash: bytes, header: dict, last_commit: Commit | None) -> str:
    empty_commit = {"height": "0", "round": 0, "block_id": block_id(None), "signatures": []}
    return http_result(
        {
            "block_id": block_id(block_hash),
            "block": {
                "header": header,
                "data": {"txs": []},
                "evidence": {"evidence": []},
                "last_commit": commit_doc(last_commit) if last_commit else empty_commit,
            },
        }
    )


def commit_reply(*, header: dict, commit: Commit, canonical: bool) -> str:
    return http_result({"signed_header": {"header": header, "commit": commit_doc(commit)}, "canonical": canonical})
