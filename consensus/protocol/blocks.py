"""Blocks and commits, however they come: the /block, /blockchain and /commit replies, and a
NewBlock event's value (one decoder for a block, whichever way it came)."""

from __future__ import annotations

from typing import Any

from . import fields as f
from .envelope import guarded, unwrap
from .errors import BadValue
from .headers import header_hash
from .values import Block, BlockMeta, Commit, CommitSig


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


def decode_block(body: str | bytes) -> Block:
    """The /block reply."""
    return guarded("block reply", lambda result: decode_block_body(result, "block"), unwrap(body))


# Bounds of what a block can hold: CometBFT caps a block at 100 MiB (types.MaxBlockSizeBytes), so
# neither its size nor its transaction count can go past that.
MAX_BLOCK_BYTES = 104_857_600
MAX_BLOCK_METAS = 20  # the node's page of /blockchain; a longer list is not an honest node's


def decode_blockchain(body: str | bytes) -> tuple[int, list[BlockMeta]]:
    """The /blockchain reply: the node's latest height and its block metas (newest first, as sent)."""
    return guarded("blockchain reply", _blockchain, unwrap(body))


def _blockchain(result: dict) -> tuple[int, list[BlockMeta]]:
    last = f.height(f.get(result, "last_height", "blockchain"), "blockchain.last_height", allow_zero=True)
    raw = f.get(result, "block_metas", "blockchain")
    if not isinstance(raw, list) or len(raw) > MAX_BLOCK_METAS:
        raise BadValue(f"blockchain.block_metas: expected a list of at most {MAX_BLOCK_METAS}")
    metas = []
    for i, item in enumerate(raw):
        path = f"blockchain.block_metas[{i}]"
        item = f.obj(item, path)
        header = f.obj(f.get(item, "header", path), f"{path}.header")
        hp = f"{path}.header"
        time = f.timestamp(f.get(header, "time", hp), f"{hp}.time")
        assert time is not None
        metas.append(
            BlockMeta(
                height=f.height(f.get(header, "height", hp), f"{hp}.height"),
                time=time,
                chain_id=f.string(header.get("chain_id", ""), f"{hp}.chain_id"),
                proposer_address=f.address(f.get(header, "proposer_address", hp), f"{hp}.proposer_address"),
                num_txs=f.integer(f.get(item, "num_txs", path), f"{path}.num_txs", lo=0, hi=MAX_BLOCK_BYTES),
                block_size=f.integer(item.get("block_size", "0"), f"{path}.block_size", lo=0, hi=MAX_BLOCK_BYTES),
                block_hash=f.hex_bytes(
                    f.obj(item.get("block_id", {}), f"{path}.block_id").get("hash", ""),
                    f"{path}.block_id.hash",
                    size=32,
                ),
                data_hash=f.hex_bytes(header.get("data_hash", ""), f"{hp}.data_hash", size=32),
                header_hash=header_hash(header, hp),
            )
        )
    return last, metas


def decode_commit(body: str | bytes) -> Commit:
    """The /commit reply: canonical once height+1 is committed, else the node's "seen" commit."""
    return guarded("commit reply", _commit, unwrap(body))


def _commit(result: dict) -> Commit:
    header = f.obj(f.get(result, "signed_header", "commit"), "signed_header")
    commit = decode_commit_body(f.obj(f.get(header, "commit", "signed_header"), "commit"), "commit")
    canonical = result.get("canonical")
    if not isinstance(canonical, bool):
        raise BadValue("commit.canonical: expected a boolean")
    return Commit(commit.height, commit.round, commit.block_hash, commit.signatures, canonical=canonical)
