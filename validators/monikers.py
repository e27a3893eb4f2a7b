"""Operator monikers from the Cosmos SDK REST API (LCD), where a chain offers one.

`/cosmos/staking/v1beta1/validators` lists each validator's consensus public key and description;
the consensus address is derived from the key. Optional: without it ctop shows hex addresses.
"""

from __future__ import annotations

import logging

import requests

from consensus.models import Chain

from .indexer import address_of
from .models import Validator

log = logging.getLogger("ctop.indexer")

_ED25519 = "/cosmos.crypto.ed25519.PubKey"


def refresh_monikers(chain: Chain, *, timeout: float = 10.0, max_pages: int = 50) -> int:
    """Update monikers and operator addresses; returns how many validators changed. Errors are
    logged and change nothing."""
    if not chain.rest_url:
        return 0
    base = chain.rest_url.rstrip("/")
    found: dict[str, tuple[str, str]] = {}
    key = ""
    try:
        for _ in range(max_pages):
            params = {"pagination.limit": "500"}
            if key:
                params["pagination.key"] = key
            response = requests.get(f"{base}/cosmos/staking/v1beta1/validators", params=params, timeout=timeout)
            response.raise_for_status()
            doc = response.json()
            for v in doc.get("validators", []):
                pub = v.get("consensus_pubkey") or {}
                if pub.get("@type") != _ED25519:
                    continue
                address = address_of("tendermint/PubKeyEd25519", pub.get("key", ""))
                if address:
                    moniker = str((v.get("description") or {}).get("moniker", ""))[:128]
                    found[address] = (moniker, str(v.get("operator_address", ""))[:128])
            key = (doc.get("pagination") or {}).get("next_key") or ""
            if not key:
                break
    except (requests.RequestException, ValueError, AttributeError) as exc:
        log.warning("%s: monikers not refreshed from %s: %s", chain.name, base, exc)
        return 0
    changed = 0
    for validator in Validator.objects.filter(chain=chain, address__in=list(found)):
        moniker, operator = found[validator.address]
        if (validator.moniker, validator.operator_address) != (moniker, operator):
            validator.moniker, validator.operator_address = moniker, operator
            validator.save(update_fields=["moniker", "operator_address", "updated_at"])
            changed += 1
    return changed
