"""Validator status from the chain's Cosmos SDK REST API (LCD), where a chain offers one.

Three reads per pass, each a bounded, decoded reply (consensus.protocol.rest / .slashing):
- `/cosmos/staking/v1beta1/validators`: each validator's consensus key (mapped to its consensus
  address, as CometBFT derives it), moniker, operator address, bond status, jailed flag, tokens and
  commission. This is also where every validator's moniker comes from.
- `/cosmos/slashing/v1beta1/params`: the downtime rule (window, minimum signed share, jail time).
- `/cosmos/slashing/v1beta1/signing_infos`: per consensus address, the misses counted in the
  current window, the end of a jailing, and whether it was tombstoned.

Only validators ctop already knows (from the active sets it indexed) are kept: a REST API listing a
million validators adds nothing. The staking read is required (without it nothing changes and the
pass is an error for this chain); a failed slashing read keeps the last counters and says so on the
chain's ChainRestStatus, which is also where "why is the status missing" is answered. A chain
without `rest_url` has no status and keeps working.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from common import http
from common.text import one_line
from consensus import protocol as p
from consensus.models import Chain, Validator
from consensus.protocol.keys import COMETBFT_ED25519, address_of
from consensus.protocol.rest import ED25519, StakingValidator, decode_staking_validators
from consensus.protocol.slashing import SigningInfo, SlashingParams, decode_signing_infos, decode_slashing_params
from consensus.rpc import max_reply_bytes

from .indexer import IndexerError
from .models import ChainRestStatus, StatusChange, ValidatorStatus

log = logging.getLogger("ctop.indexer")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)  # as consensus.networks names chains

STAKING = "/cosmos/staking/v1beta1/validators"
PARAMS = "/cosmos/slashing/v1beta1/params"
SIGNING = "/cosmos/slashing/v1beta1/signing_infos"
NO_REST = "no REST endpoint configured for this chain (Chain.rest_url): status, monikers and jail risk need one"


MAX_REST_URL = Chain._meta.get_field("rest_url").max_length


def parse_rest_urls(values: list[str]) -> dict[str, str]:
    """`--rest NAME=URL` values: {chain name: REST base URL}. ValueError says what is wrong without
    repeating the value (it may carry credentials or an API key)."""
    out: dict[str, str] = {}
    for n, value in enumerate(values, 1):
        name, sep, url = value.partition("=")
        name, url = name.strip(), url.strip().rstrip("/")
        where = f"--rest #{n}"
        if not sep or not name or not url:
            raise ValueError(f"{where}: expected NAME=URL, e.g. cosmoshub=https://lcd.example")
        if not _NAME.match(name):
            raise ValueError(f"{where}: {one_line(name, 40)!r} is not a chain name")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{where} ({name}): the REST URL must be http:// or https:// with a host")
        if parts.query or parts.fragment:
            raise ValueError(f"{where} ({name}): a REST base URL takes no query or fragment (paths are appended)")
        if len(url) > MAX_REST_URL:
            raise ValueError(f"{where} ({name}): the REST URL is longer than {MAX_REST_URL} characters")
        out[name] = url
    return out


_warned: set[str] = set()


def with_rest_urls(chains: list[Chain], rest: dict[str, str]) -> list[Chain]:
    """Give the named chains their --rest URL (stored, so pages and other processes see it; the
    command line wins over an edit in the admin while it runs). Cheap enough for every tick, so a
    chain registered later gets its URL as soon as it appears; a name that matches no watched chain
    is said once in the log."""
    names = {c.name for c in chains}
    for name in rest.keys() - names - _warned:
        log.warning("--rest %s: no such chain is watched (yet); its REST URL is kept for when it is", name)
        _warned.add(name)
    for chain in chains:
        url = rest.get(chain.name)
        if url and chain.rest_url != url:
            Chain.objects.filter(pk=chain.pk).update(rest_url=url)
            chain.rest_url = url
    return chains


@dataclass(frozen=True)
class StatusRead:
    validators: int  # known validators whose status was read
    changed: int  # of them, status changes recorded
    slashing_error: str  # "" when the slashing read worked


class _Budget:
    """One total deadline for a pass over every page of every read: a server that answers each
    page just in time cannot stretch a pass past it."""

    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds

    def left(self, what: str) -> float:
        remaining = self.until - time.monotonic()
        if remaining <= 0:
            raise IndexerError(f"status not refreshed: out of time reading {what}")
        return remaining


def _read(base: str, path: str, decode, budget: _Budget, what: str, params: dict | None = None):
    """One GET of the REST API within what is left of the pass's budget, decoded; every way it can
    fail is an IndexerError that says which read and why."""
    try:
        response = http.get(f"{base}{path}", params=params, deadline=budget.left(what), max_bytes=max_reply_bytes())
        if response.status != 200:
            raise IndexerError(f"{what} not read: REST API answered HTTP {response.status}")
        return decode(response.body)
    except http.HTTPError as exc:
        raise IndexerError(f"{what} not read: {exc}") from None
    except p.ProtocolError as exc:
        raise IndexerError(f"{what} not read: the REST reply is malformed: {exc}") from None


def _pages(base: str, path: str, decode, budget: _Budget, max_pages: int, what: str):
    key = ""
    for _ in range(max_pages):
        params = {"pagination.limit": "500"}
        if key:
            params["pagination.key"] = key
        page = _read(base, path, decode, budget, what, params)
        yield page
        key = page.next_key
        if not key:
            return
    raise IndexerError(f"{what} not read: more than {max_pages} pages")


def refresh_status(chain: Chain, *, budget: float = 30.0, max_pages: int = 50) -> StatusRead:
    """Read and store the status of the chain's known validators; IndexerError if the staking read
    fails (then nothing changed). Monikers and operator addresses are updated on the way."""
    if not chain.rest_url:
        ChainRestStatus.objects.update_or_create(
            chain=chain, defaults={"last_error": NO_REST, "last_error_at": timezone.now()}
        )
        return StatusRead(0, 0, NO_REST)
    base = chain.rest_url.rstrip("/")
    clock = _Budget(budget)
    known = dict(Validator.objects.filter(chain=chain).values_list("address", "pk"))
    staking: dict[str, StakingValidator] = {}
    try:
        for page in _pages(base, STAKING, decode_staking_validators, clock, max_pages, "staking validators"):
            for v in page.validators:
                if v.pubkey_type != ED25519:
                    continue
                address = address_of(COMETBFT_ED25519, v.pubkey)
                if address in known:
                    staking[address] = v
    except IndexerError as exc:  # the pages say why the status is stale
        ChainRestStatus.objects.update_or_create(
            chain=chain, defaults={"last_error": one_line(str(exc), 2000), "last_error_at": timezone.now()}
        )
        raise
    slashing_error = ""
    params: SlashingParams | None = None
    infos: dict[str, SigningInfo] = {}
    try:
        params = _read(base, PARAMS, decode_slashing_params, clock, "slashing params")
        for page in _pages(base, SIGNING, decode_signing_infos, clock, max_pages, "signing infos"):
            infos.update((i.address, i) for i in page.infos if i.address in known)
    except IndexerError as exc:
        slashing_error = str(exc)
        params, infos = None, {}
    changed = _store(chain, known, staking, params, infos, slashing_error)
    if slashing_error:
        log.warning("%s: %s", chain.name, one_line(slashing_error))
    return StatusRead(len(staking), changed, slashing_error)


@transaction.atomic
def _store(
    chain: Chain,
    known: dict[str, int],
    staking: dict[str, StakingValidator],
    params: SlashingParams | None,
    infos: dict[str, SigningInfo],
    slashing_error: str,
) -> int:
    now = timezone.now()
    ids = [known[a] for a in staking]
    validators = {v.pk: v for v in Validator.objects.filter(pk__in=ids).select_for_update()}
    previous = {s.validator_id: s for s in ValidatorStatus.objects.filter(validator_id__in=ids)}
    changes: list[StatusChange] = []
    for address, v in staking.items():
        vid = known[address]
        validator = validators[vid]
        if (validator.moniker, validator.operator_address) != (v.moniker, v.operator_address):
            validator.moniker, validator.operator_address = v.moniker, v.operator_address
            validator.save(update_fields=["moniker", "operator_address", "updated_at"])
        status = previous.get(vid) or ValidatorStatus(validator_id=vid, chain=chain)
        before = (status.bond_status, status.jailed, status.tombstoned) if vid in previous else None
        status.bond_status, status.jailed, status.tokens, status.commission = v.status, v.jailed, v.tokens, v.commission
        status.read_at = now
        if not slashing_error:
            info = infos.get(address)
            status.counters_read_at = now
            # None: the chain has no signing info for it (yet).
            status.missed_blocks_counter = info.missed_blocks_counter if info else None
            status.jailed_until = info.jailed_until if info else None
            status.tombstoned = status.tombstoned or bool(info and info.tombstoned)  # tombstoning is for ever
        if before is not None and status.jailed and not before[1]:
            status.jailed_since = now
        elif not status.jailed:
            status.jailed_since = None
        if before is not None and status.tombstoned and not before[2]:
            status.tombstoned_since = now
        status.save()
        after = (status.bond_status, status.jailed, status.tombstoned)
        if before != after:
            changes.append(
                StatusChange(
                    chain=chain,
                    validator_id=vid,
                    seen_at=now,
                    bond_status=status.bond_status,
                    jailed=status.jailed,
                    tombstoned=status.tombstoned,
                    tokens=status.tokens,
                )
            )
    StatusChange.objects.bulk_create(changes)
    defaults: dict = {"last_error": one_line(slashing_error, 2000), "last_error_at": now if slashing_error else None}
    if params is not None:
        defaults |= {
            "signed_blocks_window": params.signed_blocks_window,
            "min_signed_per_window": params.min_signed_per_window,
            "downtime_jail_seconds": params.downtime_jail_seconds,
            "read_at": now,
        }
    ChainRestStatus.objects.update_or_create(chain=chain, defaults=defaults)
    return len(changes)
