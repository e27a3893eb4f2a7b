"""Cosmos SDK REST (LCD) replies that ctop reads, decoded into typed values like the RPC ones.

The REST API belongs to whoever runs it: every field is checked, every string bounded, and
anything unexpected is a ProtocolError with the path of the field, never a TypeError.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal

from common.text import one_line

from . import fields as f
from .errors import BadValue, MalformedFrame, ProtocolError

ED25519 = "/cosmos.crypto.ed25519.PubKey"
MAX_VALIDATORS_PER_PAGE = 10_000
MAX_TOKENS = 10**40  # far above any chain's supply in base units; a bigger number is corruption
BOND_STATUS = {
    "BOND_STATUS_BONDED": "bonded",
    "BOND_STATUS_UNBONDING": "unbonding",
    "BOND_STATUS_UNBONDED": "unbonded",
}
_DECIMAL = re.compile(r"^[0-9]{1,40}(\.[0-9]{1,18})?$")


def decimal(value: object, path: str, *, lo: Decimal, hi: Decimal) -> Decimal:
    """A Cosmos SDK Dec ("0.050000000000000000") within [lo, hi]."""
    text = f.string(value, path)
    if not _DECIMAL.match(text):
        raise BadValue(f"{path}: not a decimal: {text!r:.40}")
    number = Decimal(text)
    if not lo <= number <= hi:
        raise BadValue(f"{path}: {text:.40} is out of range [{lo}, {hi}]")
    return number


def tokens(value: object, path: str) -> int:
    text = f.string(value, path)
    if not (text.isascii() and text.isdigit() and len(text) <= 41):
        raise BadValue(f"{path}: not a token amount: {text!r:.40}")
    n = int(text)
    if n > MAX_TOKENS:
        raise BadValue(f"{path}: {text:.40} tokens is implausible")
    return n


@dataclass(frozen=True, slots=True)
class StakingValidator:
    operator_address: str
    pubkey_type: str  # the consensus key's @type
    pubkey: str  # base64
    moniker: str  # one line, bounded: it is shown on pages and in messages
    jailed: bool
    status: str  # "bonded" | "unbonding" | "unbonded" | "unknown"
    tokens: int  # bonded tokens, in the chain's base unit (bounded: MAX_TOKENS)
    commission: Decimal | None  # commission rate, 0..1


@dataclass(frozen=True, slots=True)
class StakingPage:
    validators: tuple[StakingValidator, ...]
    next_key: str  # "" on the last page


def _text(value: object, path: str, limit: int) -> str:
    if value is None:
        return ""
    return one_line(f.string(value, path), limit)


def reply(body: str | bytes) -> dict:
    """A REST reply's JSON object."""
    try:
        return f.obj(json.loads(body), "reply")
    except (ValueError, RecursionError) as exc:
        raise MalformedFrame(f"reply is not JSON: {exc}") from None


def page_items(doc: dict, key: str, limit: int) -> list:
    """A paginated reply's list under `key`, at most `limit` long (one page of a REST API)."""
    raw = f.get(doc, key, "reply")
    if not isinstance(raw, list):
        raise BadValue(f"{key}: expected a list, got {type(raw).__name__}")
    if len(raw) > limit:
        raise BadValue(f"{key}: {len(raw)} on one page is implausible")
    return raw


def decode_staking_validators(body: str | bytes) -> StakingPage:
    """`/cosmos/staking/v1beta1/validators`: validators with their consensus keys and monikers."""
    try:
        doc = reply(body)
        raw = page_items(doc, "validators", MAX_VALIDATORS_PER_PAGE)
        out = []
        for i, item in enumerate(raw):
            p = f"validators[{i}]"
            item = f.obj(item, p)
            key = f.obj(item.get("consensus_pubkey") or {}, f"{p}.consensus_pubkey")
            description = f.obj(item.get("description") or {}, f"{p}.description")
            jailed = item.get("jailed", False)
            commission = f.obj(item.get("commission") or {}, f"{p}.commission")
            rates = f.obj(commission.get("commission_rates") or {}, f"{p}.commission.commission_rates")
            rate = rates.get("rate")
            out.append(
                StakingValidator(
                    operator_address=_text(item.get("operator_address"), f"{p}.operator_address", 128),
                    pubkey_type=_text(key.get("@type"), f"{p}.consensus_pubkey.@type", 128),
                    pubkey=_text(key.get("key"), f"{p}.consensus_pubkey.key", 128),
                    moniker=_text(description.get("moniker"), f"{p}.description.moniker", 128),
                    jailed=jailed if isinstance(jailed, bool) else False,
                    status=BOND_STATUS.get(_text(item.get("status"), f"{p}.status", 64), "unknown"),
                    tokens=tokens(item.get("tokens") or "0", f"{p}.tokens"),
                    commission=None if rate is None else decimal(rate, f"{p}.commission", lo=Decimal(0), hi=Decimal(1)),
                )
            )
        pagination = f.obj(doc.get("pagination") or {}, "pagination")
        next_key = pagination.get("next_key") or ""
        return StakingPage(tuple(out), _text(next_key, "pagination.next_key", 512))
    except ProtocolError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # pragma: no cover - guard
        raise MalformedFrame(f"undecodable staking reply: {exc!r}") from None
