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


# --- bech32 (BIP-173): the Cosmos SDK writes consensus addresses as `<prefix>valcons1...` ---

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
MAX_BECH32 = 128  # an address is ~50 characters; a longer "address" is not one


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GENERATOR[i] if (top >> i) & 1 else 0
    return chk


def bech32_address(text: str) -> str | None:
    """The 20-byte address a bech32 string carries, as uppercase hex (ctop's form), or None if the
    string is not valid bech32 (bad checksum, mixed case, wrong length): a REST reply's address is
    trusted only when its checksum holds."""
    if not isinstance(text, str) or not 8 <= len(text) <= MAX_BECH32 or not text.isascii():
        return None
    if text.lower() != text and text.upper() != text:
        return None
    text = text.lower()
    sep = text.rfind("1")
    if sep < 1 or sep + 7 > len(text):
        return None
    prefix, data = text[:sep], text[sep + 1 :]
    if any(c not in _CHARSET for c in data) or any(not 33 <= ord(c) <= 126 for c in prefix):
        return None
    values = [_CHARSET.index(c) for c in data]
    expanded = [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]
    if _polymod(expanded + values) != 1:
        return None
    acc = bits = 0
    out = bytearray()
    for v in values[:-6]:  # 5-bit groups to bytes; leftover bits must be zero padding
        acc = acc << 5 | v
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append(acc >> bits & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None
    return out.hex().upper() if len(out) == 20 else None


def bech32_encode(prefix: str, address_hex: str) -> str:
    """The inverse, for the simulator's REST API and the tests."""
    raw = bytes.fromhex(address_hex)
    acc = bits = 0
    values: list[int] = []
    for b in raw:
        acc = acc << 8 | b
        bits += 8
        while bits >= 5:
            bits -= 5
            values.append(acc >> bits & 31)
    if bits:
        values.append(acc << (5 - bits) & 31)
    expanded = [ord(c) >> 5 for c in prefix] + [0] + [ord(c) & 31 for c in prefix]
    mod = _polymod(expanded + values + [0] * 6) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return prefix + "1" + "".join(_CHARSET[v] for v in values + checksum)
