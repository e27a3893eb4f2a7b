"""Monikers from a chain's Cosmos SDK REST API (an HTTP server on 127.0.0.1 playing the LCD)."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consensus.models import Validator
from consensus.protocol.keys import address_of
from validators.indexer import IndexerError
from validators.monikers import refresh_monikers

KEYS = [hashlib.sha256(f"key{i}".encode()).digest() for i in range(3)]


def lcd_validators(page: str) -> dict:
    items = [
        {
            "operator_address": f"cosmosvaloper1op{i}",
            "consensus_pubkey": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": base64.b64encode(k).decode()},
            "description": {"moniker": f"validator-{i}"},
        }
        for i, k in enumerate(KEYS)
    ]
    # Two pages, like a real LCD with pagination.next_key.
    if page == "":
        return {"validators": items[:2], "pagination": {"next_key": "cGFnZTI=", "total": "3"}}
    return {"validators": items[2:], "pagination": {"next_key": None, "total": "3"}}


@pytest.fixture
def lcd():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            from urllib.parse import parse_qs, urlparse

            url = urlparse(self.path)
            if url.path != "/cosmos/staking/v1beta1/validators":
                self.send_error(404)
                return
            key = parse_qs(url.query).get("pagination.key", [""])[0]
            body = json.dumps(lcd_validators(key)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.django_db
def test_monikers_are_mapped_by_consensus_key(chain, lcd):
    for k in KEYS:
        Validator.objects.create(
            chain=chain, address=address_of("tendermint/PubKeyEd25519", base64.b64encode(k).decode())
        )
    chain.rest_url = lcd
    chain.save()
    assert refresh_monikers(chain) == 3
    assert sorted(Validator.objects.values_list("moniker", flat=True)) == ["validator-0", "validator-1", "validator-2"]
    assert refresh_monikers(chain) == 0  # nothing changed


@pytest.mark.django_db
def test_unreachable_rest_api_changes_nothing(chain):
    Validator.objects.create(chain=chain, address="AB" * 20, moniker="kept")
    chain.rest_url = "http://127.0.0.1:9"
    with pytest.raises(IndexerError, match="connection refused"):
        refresh_monikers(chain, timeout=1)
    assert Validator.objects.get().moniker == "kept"
