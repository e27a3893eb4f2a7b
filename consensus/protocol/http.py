"""HTTP JSON-RPC replies about the node and its sets: /status and /validators (blocks and commits
are in blocks.py)."""

from __future__ import annotations

from . import fields as f
from .envelope import guarded, unwrap
from .errors import BadValue
from .values import Status, ValidatorInfo, ValidatorsPage


def decode_status(body: str | bytes) -> Status:
    """The /status reply."""
    return guarded("status reply", _status, unwrap(body))


def decode_validators(body: str | bytes) -> ValidatorsPage:
    """One page of the /validators reply."""
    return guarded("validators reply", _validators, unwrap(body))


def _status(result: dict) -> Status:
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


def _validators(result: dict) -> ValidatorsPage:
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
