"""Cosmos SDK REST (LCD) replies that ctop reads, decoded into typed values like the RPC ones.

The REST API belongs to whoever runs it: every field is checked, every string bounded, and
anything unexpected is a ProtocolError with the path of the field, never a TypeError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from common.text import one_line

from . import fields as f
from .errors import BadValue, MalformedFrame, ProtocolError

ED25519 = "/cosmos.crypto.ed25519.PubKey"
MAX_VALIDATORS_PER_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class StakingValidator:
    operator_address: str
    pubkey_type: str  # the consensus key's @type
    pubkey: str  # base64
    moniker: str  # one line, bounded: it is shown on pages and in messages
    jailed: bool
    status: str


@dataclass(frozen=True, slots=True)
class StakingPage:
    validators: tuple[StakingValidator, ...]
    next_key: str  # "" on the last page


def _text(value: object, path: str, limit: int) -> str:
    if value is None:
        return ""
    return one_line(f.string(value, path), limit)


def decode_staking_validators(body: str | bytes) -> StakingPage:
    """`/cosmos/staking/v1beta1/validators`: validators with their consensus keys and monikers."""
    try:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise MalformedFrame(f"reply is not JSON: {exc}") from None
        doc = f.obj(doc, "reply")
        raw = f.get(doc, "validators", "reply")
        if not isinstance(raw, list):
            raise BadValue(f"validators: expected a list, got {type(raw).__name__}")
        if len(raw) > MAX_VALIDATORS_PER_PAGE:
            raise BadValue(f"validators: {len(raw)} on one page is implausible")
        out = []
        for i, item in enumerate(raw):
            p = f"validators[{i}]"
            item = f.obj(item, p)
            key = f.obj(item.get("consensus_pubkey") or {}, f"{p}.consensus_pubkey")
            description = f.obj(item.get("description") or {}, f"{p}.description")
            jailed = item.get("jailed", False)
            out.append(
                StakingValidator(
                    operator_address=_text(item.get("operator_address"), f"{p}.operator_address", 128),
                    pubkey_type=_text(key.get("@type"), f"{p}.consensus_pubkey.@type", 128),
                    pubkey=_text(key.get("key"), f"{p}.consensus_pubkey.key", 128),
                    moniker=_text(description.get("moniker"), f"{p}.description.moniker", 128),
                    jailed=jailed if isinstance(jailed, bool) else False,
                    status=_text(item.get("status"), f"{p}.status", 64),
                )
            )
        pagination = f.obj(doc.get("pagination") or {}, "pagination")
        next_key = pagination.get("next_key") or ""
        return StakingPage(tuple(out), _text(next_key, "pagination.next_key", 512))
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # pragma: no cover - guard
        raise MalformedFrame(f"undecodable staking reply: {exc!r}") from None
