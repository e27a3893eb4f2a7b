"""Operator monikers from the Cosmos SDK REST API (LCD), where a chain offers one.

`/cosmos/staking/v1beta1/validators` lists each validator's consensus public key and description;
the consensus address is derived from the key. Optional: without it ctop shows hex addresses. The
reply is decoded by the protocol module (bounded, checked): a malformed one is an error for this
chain, never a crash of the indexer.
"""

from __future__ import annotations

import logging

from common import http
from consensus import protocol as p
from consensus.models import Chain, Validator
from consensus.protocol.keys import COMETBFT_ED25519, address_of
from consensus.protocol.rest import ED25519, decode_staking_validators
from consensus.rpc import max_reply_bytes

from .indexer import IndexerError

log = logging.getLogger("ctop.indexer")


def refresh_monikers(chain: Chain, *, timeout: float = 10.0, max_pages: int = 50) -> int:
    """Update monikers and operator addresses; returns how many validators changed. A failed or
    malformed read raises IndexerError and changes nothing."""
    if not chain.rest_url:
        return 0
    base = chain.rest_url.rstrip("/")
    # Only validators ctop knows are kept from the reply: a REST API listing a million keeps nothing more.
    known = set(Validator.objects.filter(chain=chain).values_list("address", flat=True))
    found: dict[str, tuple[str, str]] = {}
    key = ""
    for _ in range(max_pages):
        params = {"pagination.limit": "500"}
        if key:
            params["pagination.key"] = key
        try:
            response = http.get(
                f"{base}/cosmos/staking/v1beta1/validators",
                params=params,
                deadline=timeout,
                max_bytes=max_reply_bytes(),
            )
            if response.status != 200:
                raise IndexerError(f"monikers not refreshed: REST API answered HTTP {response.status}")
            page = decode_staking_validators(response.body)
        except http.HTTPError as exc:
            raise IndexerError(f"monikers not refreshed: {exc}") from None
        except p.ProtocolError as exc:
            raise IndexerError(f"monikers not refreshed: the REST reply is malformed: {exc}") from None
        for v in page.validators:
            if v.pubkey_type != ED25519:
                continue
            address = address_of(COMETBFT_ED25519, v.pubkey)
            if address in known:
                found[address] = (v.moniker, v.operator_address)
        key = page.next_key
        if not key:
            break
    changed = 0
    for validator in Validator.objects.filter(chain=chain, address__in=list(found)):
        moniker, operator = found[validator.address]
        if (validator.moniker, validator.operator_address) != (moniker, operator):
            validator.moniker, validator.operator_address = moniker, operator
            validator.save(update_fields=["moniker", "operator_address", "updated_at"])
            changed += 1
    return changed
