"""Validator keys and the consensus addresses derived from them (CometBFT's rule)."""

from __future__ import annotations

import base64
import hashlib

COMETBFT_ED25519 = "tendermint/PubKeyEd25519"  # as /validators names the key type


def address_of(pub_key_type: str, pub_key_b64: str) -> str | None:
    """CometBFT's address of an ed25519 key: the first 20 bytes of SHA-256 of the key."""
    if pub_key_type != COMETBFT_ED25519:
        return None
    try:
        raw = base64.b64decode(pub_key_b64, validate=True)
    except ValueError:
        return None
    return hashlib.sha256(raw).digest()[:20].hex().upper() if len(raw) == 32 else None
