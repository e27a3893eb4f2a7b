"""A block header's hash, recomputed from its JSON as CometBFT computes it (types.Header.Hash).

The hash is the Merkle root of the header's 14 fields, each in its protobuf encoding. Recomputing
it turns a /blockchain reply from "what an endpoint says" into facts: a header whose hash is the
block ctop saw proposed and committed is that block's header, so its data_hash (the transactions'
Merkle root) says for certain whether the block was empty. An endpoint can still misstate
`num_txs`, but not emptiness: `num_txs == 0` must agree with `data_hash == sha256("")`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from . import fields as f
from .errors import BadValue

EMPTY_HASH = hashlib.sha256(b"").digest()  # the Merkle root of no transactions
_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _uint(field: int, n: int) -> bytes:
    """A proto3 varint field (left out when zero, as proto3 does)."""
    return _varint(field << 3) + _varint(n) if n else b""


def _bytes(field: int, data: bytes, *, always: bool = False) -> bytes:
    """A length-delimited field (left out when empty, unless gogoproto's non-nullable says always)."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data if data or always else b""


def _hex(value: object, path: str) -> bytes:
    return f.hex_bytes(value if value is not None else "", path) or b""


def _timestamp(text: object, path: str) -> bytes:
    """google.protobuf.Timestamp of an RFC 3339 time with up to nanoseconds (the JSON keeps them)."""
    match = _TIME.match(f.string(text, path))
    if not match:
        raise BadValue(f"{path}: not a UTC timestamp: {text!r:.40}")
    seconds = int(datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
    nanos = int((match.group(2) or "0").ljust(9, "0"))
    if seconds < 0:
        raise BadValue(f"{path}: before 1970")
    return _uint(1, seconds) + _uint(2, nanos)


def _merkle(items: list[bytes]) -> bytes:
    """CometBFT's simple Merkle tree (crypto/merkle): leaves 0x00 || item, inner nodes 0x01 || l || r,
    split at the largest power of two below the count."""
    if not items:
        return EMPTY_HASH
    if len(items) == 1:
        return hashlib.sha256(b"\x00" + items[0]).digest()
    k = 1 << ((len(items) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _merkle(items[:k]) + _merkle(items[k:])).digest()


def header_hash(header: dict, path: str = "header") -> bytes:
    """The hash of a header as the node's JSON gives it; raises BadValue on a malformed field."""
    version = f.obj(header.get("version", {}), f"{path}.version")
    block_version = f.integer(version.get("block", "0"), f"{path}.version.block", lo=0, hi=2**64 - 1)
    app_version = f.integer(version.get("app", "0"), f"{path}.version.app", lo=0, hi=2**64 - 1)
    last = f.obj(header.get("last_block_id", {}), f"{path}.last_block_id")
    parts = f.obj(last.get("parts", {}), f"{path}.last_block_id.parts")
    part_set = _uint(1, f.integer(parts.get("total", 0), f"{path}.last_block_id.parts.total", lo=0, hi=2**32 - 1))
    part_set += _bytes(2, _hex(parts.get("hash"), f"{path}.last_block_id.parts.hash"))
    last_block_id = _bytes(1, _hex(last.get("hash"), f"{path}.last_block_id.hash")) + _bytes(2, part_set, always=True)
    height = f.height(f.get(header, "height", path), f"{path}.height")

    def cdc_bytes(key: str) -> bytes:  # gogotypes.BytesValue
        return _bytes(1, _hex(header.get(key), f"{path}.{key}"))

    return _merkle(
        [
            _uint(1, block_version) + _uint(2, app_version),
            _bytes(1, f.string(header.get("chain_id", ""), f"{path}.chain_id").encode()),  # StringValue
            _uint(1, height),  # Int64Value
            _timestamp(f.get(header, "time", path), f"{path}.time"),
            last_block_id,
            cdc_bytes("last_commit_hash"),
            cdc_bytes("data_hash"),
            cdc_bytes("validators_hash"),
            cdc_bytes("next_validators_hash"),
            cdc_bytes("consensus_hash"),
            cdc_bytes("app_hash"),
            cdc_bytes("last_results_hash"),
            cdc_bytes("evidence_hash"),
            cdc_bytes("proposer_address"),
        ]
    )
