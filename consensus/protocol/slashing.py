"""Cosmos SDK slashing replies (REST): the chain's downtime rule and each validator's counter.

`/cosmos/slashing/v1beta1/params` says how many blocks a validator may miss: of every
`signed_blocks_window` blocks it must sign `min_signed_per_window`, or it is jailed for
`downtime_jail_duration`. `/cosmos/slashing/v1beta1/signing_infos` gives, per consensus address
(bech32 `...valcons1...`), the misses counted in the current window, when a jailing ends and
whether the validator was tombstoned (slashed for double signing: it can never come back).

Like every reply ctop reads, these come from someone else's server: every number is range-checked,
every address must carry a valid bech32 checksum, and anything else is a ProtocolError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from . import fields as f
from .errors import BadValue, MalformedFrame, ProtocolError
from .keys import bech32_address
from .rest import decimal, page_items, reply

MAX_WINDOW = 10**9  # blocks; real chains use 100 to 100,000
MAX_INFOS_PER_PAGE = 10_000
MAX_JAIL_SECONDS = 10 * 365 * 86400
_DURATION = re.compile(r"^([0-9]{1,12})(\.[0-9]{1,9})?s$")


@dataclass(frozen=True, slots=True)
class SlashingParams:
    signed_blocks_window: int
    min_signed_per_window: Decimal  # 0..1
    downtime_jail_seconds: float

    @property
    def allowed_misses(self) -> int:
        """Misses a window allows before jailing. The SDK jails when the counter passes
        window - minSigned, minSigned = window x min_signed_per_window rounded (Dec.RoundInt64)."""
        min_signed = int((self.min_signed_per_window * self.signed_blocks_window).to_integral_value())
        return max(0, self.signed_blocks_window - min_signed)


@dataclass(frozen=True, slots=True)
class SigningInfo:
    address: str  # consensus address, uppercase hex (ctop's form)
    missed_blocks_counter: int
    jailed_until: datetime | None  # None: never jailed (the SDK writes 1970-01-01)
    tombstoned: bool


@dataclass(frozen=True, slots=True)
class SigningInfoPage:
    infos: tuple[SigningInfo, ...]
    next_key: str


def decode_slashing_params(body: str | bytes) -> SlashingParams:
    try:
        params = f.obj(f.get(reply(body), "params", "reply"), "params")
        window = f.integer(
            f.get(params, "signed_blocks_window", "params"), "params.signed_blocks_window", lo=1, hi=MAX_WINDOW
        )
        share = decimal(
            f.get(params, "min_signed_per_window", "params"),
            "params.min_signed_per_window",
            lo=Decimal(0),
            hi=Decimal(1),
        )
        text = f.string(f.get(params, "downtime_jail_duration", "params"), "params.downtime_jail_duration")
        m = _DURATION.match(text)
        if not m:
            raise BadValue(f"params.downtime_jail_duration: not a duration: {text!r:.40}")
        seconds = float(m.group(1) + (m.group(2) or ""))
        if seconds > MAX_JAIL_SECONDS:
            raise BadValue(f"params.downtime_jail_duration: {text:.40} is implausible")
        return SlashingParams(window, share, seconds)
    except ProtocolError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:  # pragma: no cover - guard
        raise MalformedFrame(f"undecodable slashing params: {exc!r}") from None


def decode_signing_infos(body: str | bytes) -> SigningInfoPage:
    try:
        doc = reply(body)
        raw = page_items(doc, "info", MAX_INFOS_PER_PAGE)
        out = []
        for i, item in enumerate(raw):
            p = f"info[{i}]"
            item = f.obj(item, p)
            text = f.string(f.get(item, "address", p), f"{p}.address")
            address = bech32_address(text)
            if address is None:
                raise BadValue(f"{p}.address: not a bech32 consensus address: {text!r:.60}")
            counter = f.integer(
                item.get("missed_blocks_counter") or "0", f"{p}.missed_blocks_counter", lo=0, hi=MAX_WINDOW
            )
            until = f.timestamp(item.get("jailed_until") or f.ZERO_TIME, f"{p}.jailed_until", allow_zero=True)
            if until is not None and until.year <= 1970:
                until = None  # the SDK's "never": the Unix epoch
            tombstoned = item.get("tombstoned", False)
            if not isinstance(tombstoned, bool):
                raise BadValue(f"{p}.tombstoned: expected a boolean, got {tombstoned!r:.20}")
            out.append(SigningInfo(address, counter, until, tombstoned))
        pagination = f.obj(doc.get("pagination") or {}, "pagination")
        key = pagination.get("next_key") or ""
        return SigningInfoPage(tuple(out), f.string(key, "pagination.next_key")[:512])
    except ProtocolError:
        raise
    except (TypeError, ValueError, ArithmeticError) as exc:  # pragma: no cover - guard
        raise MalformedFrame(f"undecodable signing infos: {exc!r}") from None
