"""Validator status from a chain's Cosmos SDK REST API: staking (monikers, bond status, jailed,
tokens, commission) and slashing (the downtime rule and each validator's counter), read from the
simulator's REST API, whose slashing module follows its votes; and hostile or broken REST replies,
from a server on 127.0.0.1 that answers whatever the test says."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from consensus.models import Validator
from consensus.protocol.keys import address_of, bech32_address, bech32_encode
from consensus.protocol.slashing import decode_slashing_params
from consensus.simulator import SimChain
from consensus.simulator.scenario import Scenario, Slashing, Stall, Window
from validators.indexer import IndexerError
from validators.models import ChainRestStatus, StatusChange, ValidatorStatus
from validators.runner import index_chain
from validators.status import NO_REST, parse_rest_urls, refresh_status

from .simhelpers import wait_for_height, watched


def test_bech32_addresses_round_trip_and_a_bad_checksum_is_refused():
    address = hashlib.sha256(b"x").digest()[:20].hex().upper()
    text = bech32_encode("cosmosvalcons", address)
    assert text.startswith("cosmosvalcons1") and bech32_address(text) == address
    assert bech32_address(text.upper()) == address  # all upper case is valid bech32
    assert bech32_address(text[:-1] + ("q" if text[-1] != "q" else "p")) is None  # checksum
    i = next(i for i in range(14, len(text)) if text[i].isalpha())
    assert bech32_address(text[:i] + text[i].upper() + text[i + 1 :]) is None  # mixed case
    assert bech32_address(bech32_encode("cosmosvalcons", "AB" * 32)) is None  # 32 bytes: not an address
    assert bech32_address("x" * 500) is None


def test_real_rest_replies_of_a_cosmos_sdk_node_decode_and_agree():
    """The localnet's own replies: every signing info's bech32 address is the address CometBFT
    derives from a staking validator's consensus key."""
    from consensus.protocol.rest import ED25519, decode_staking_validators
    from consensus.protocol.slashing import decode_signing_infos

    from .protocol_fixtures import http as text

    validators = decode_staking_validators(text("rest_staking_validators.json")).validators
    assert len(validators) == 4 and all(v.pubkey_type == ED25519 for v in validators)
    assert {v.status for v in validators} == {"bonded"} and all(v.tokens == 10**21 for v in validators)
    assert sorted(v.moniker for v in validators) == ["val0", "val1", "val2", "val3"]
    assert {v.commission for v in validators} == {Decimal("0.1")}
    derived = {address_of("tendermint/PubKeyEd25519", v.pubkey) for v in validators}
    infos = decode_signing_infos(text("rest_signing_infos.json")).infos
    assert {i.address for i in infos} == derived
    assert all(i.jailed_until is None and not i.tombstoned for i in infos)
    params = decode_slashing_params(text("rest_slashing_params.json"))
    assert (params.signed_blocks_window, params.allowed_misses, params.downtime_jail_seconds) == (100_000, 50_000, 600)


def test_the_allowance_is_the_sdks_rounding_of_the_window():
    def params(window: int, share: str):
        return decode_slashing_params(
            json.dumps(
                {
                    "params": {
                        "signed_blocks_window": str(window),
                        "min_signed_per_window": share,
                        "downtime_jail_duration": "600s",
                    }
                }
            )
        )

    assert params(10_000, "0.050000000000000000").allowed_misses == 9_500  # cosmoshub
    assert params(100, "0.500000000000000000").allowed_misses == 50
    assert params(3, "0.500000000000000000").allowed_misses == 1  # 1.5 rounds (half away from zero) to 2 signed
    assert params(100, "0.5").downtime_jail_seconds == 600.0


@pytest.mark.django_db
def test_status_and_jail_counters_follow_the_simulated_chain(sim):
    """Validator 1 goes offline at height 5 for good: its 21st miss (window 40, half must sign)
    jails it at height 25. Validator 2 misses heights 5-7 only: its counter is 3. The chain then
    stalls before height 30, so the read sees heights 1-29 whatever the machine's speed."""
    scenario = Scenario(
        offline=[Window(validator=1, start=5, end=10**6), Window(validator=2, start=5, end=7)],
        stalls=[Stall(height=30, seconds=120)],
        slashing=Slashing(window=40, min_signed=0.5, jail_seconds=3600),
        monikers={0: "alpha <b>", 3: "delta"},
    )
    # Validators 1 and 2 are small: with both out, the chain still has over 2/3 of the power.
    sim_chain = SimChain("sim-status", validators=[1000, 100, 100, 1000], block_time=0.05, scenario=scenario)
    chain, nodes = watched(sim, sim_chain)
    chain.rest_url = nodes[0].url
    chain.save()
    wait_for_height(nodes[0].url, 29)
    assert index_chain(chain)  # the set first (it makes the validators known), then the status
    by_index = {v.genesis_index: v.address for v in sim_chain.genesis}
    status = {s.validator.address: s for s in ValidatorStatus.objects.select_related("validator")}
    assert set(status) == set(by_index.values())
    jailed = status[by_index[1]]
    assert (jailed.jailed, jailed.bond_status, jailed.missed_blocks_counter) == (True, "unbonding", 0)
    assert jailed.jailed_until is not None
    assert status[by_index[2]].missed_blocks_counter == 3
    assert [status[by_index[i]].missed_blocks_counter for i in (0, 3)] == [0, 0]
    assert not any(status[by_index[i]].jailed for i in (0, 2, 3))
    assert status[by_index[0]].tokens == Decimal(1000 * 1_000_000)
    assert status[by_index[0]].commission == Decimal("0.05")
    monikers = dict(Validator.objects.filter(chain=chain).values_list("address", "moniker"))
    assert monikers[by_index[0]] == "alpha <b>" and monikers[by_index[1]] == "sim-validator-1"
    rest = ChainRestStatus.objects.get(chain=chain)
    assert (rest.signed_blocks_window, rest.allowed_misses, rest.downtime_jail_seconds) == (40, 20, 3600.0)
    assert rest.last_error == "" and rest.read_at is not None
    # The history: one row per validator on the first read; nothing new when nothing changed.
    assert StatusChange.objects.filter(chain=chain).count() == 4
    refresh_status(chain)
    assert StatusChange.objects.filter(chain=chain).count() == 4
    # An unjailing (the operator's transaction) is a change of its own.
    sim.call(lambda: sim_chain.slashing.jailed_until.clear())
    refresh_status(chain)
    changes = list(StatusChange.objects.filter(validator__address=by_index[1]).order_by("seen_at"))
    assert [(c.jailed, c.bond_status) for c in changes] == [(True, "unbonding"), (False, "bonded")]


# --- hostile and broken REST APIs ---

KEYS = [hashlib.sha256(f"key{i}".encode()).digest() for i in range(3)]
ADDRESSES = [address_of("tendermint/PubKeyEd25519", base64.b64encode(k).decode()) for k in KEYS]


def staking(**override) -> dict:
    item = {
        "operator_address": "cosmosvaloper1op",
        "consensus_pubkey": {"@type": "/cosmos.crypto.ed25519.PubKey", "key": base64.b64encode(KEYS[0]).decode()},
        "description": {"moniker": "validator-0"},
        "status": "BOND_STATUS_BONDED",
        "jailed": False,
        "tokens": "1000",
        "commission": {"commission_rates": {"rate": "0.100000000000000000"}},
    }
    return {"validators": [item | override], "pagination": {"next_key": None}}


PARAMS = {"params": {"signed_blocks_window": "100", "min_signed_per_window": "0.5", "downtime_jail_duration": "60s"}}


def infos(**override) -> dict:
    info = {
        "address": bech32_encode("cosmosvalcons", ADDRESSES[0]),
        "missed_blocks_counter": "7",
        "jailed_until": "1970-01-01T00:00:00Z",
        "tombstoned": False,
    }
    return {"info": [info | override], "pagination": {"next_key": None}}


@pytest.fixture
def lcd():
    """A REST API answering `replies[path]`: a dict (JSON), bytes (raw), an int (that HTTP status)
    or a float (drip one byte every that many seconds)."""
    replies: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            reply = replies.get(self.path.split("?")[0], 404)
            if isinstance(reply, int):
                self.send_error(reply)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            if isinstance(reply, float):
                for byte in b'{"params": {}}':
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(reply)
                return
            self.wfile.write(reply if isinstance(reply, bytes) else json.dumps(reply).encode())

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", replies
    server.shutdown()


@pytest.fixture
def known(chain):
    for address in ADDRESSES:
        Validator.objects.create(chain=chain, address=address, moniker="kept")
    return chain


def set_replies(replies: dict, **parts) -> None:
    replies["/cosmos/staking/v1beta1/validators"] = parts.get("staking", staking())
    replies["/cosmos/slashing/v1beta1/params"] = parts.get("params", PARAMS)
    replies["/cosmos/slashing/v1beta1/signing_infos"] = parts.get("infos", infos())


@pytest.mark.django_db
def test_a_good_reply_is_stored(known, lcd):
    known.rest_url, replies = lcd
    set_replies(replies)
    read = refresh_status(known)
    assert (read.validators, read.slashing_error) == (1, "")
    s = ValidatorStatus.objects.get(validator__address=ADDRESSES[0])
    assert (s.missed_blocks_counter, s.jailed_until, s.tokens, s.commission) == (7, None, 1000, Decimal("0.1"))
    assert Validator.objects.get(address=ADDRESSES[0]).moniker == "validator-0"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("part", "reply", "error"),
    [
        ("params", {"params": {"signed_blocks_window": "-5"}}, "signed_blocks_window"),
        ("params", {"params": {**PARAMS["params"], "min_signed_per_window": "7"}}, "out of range"),
        ("params", {"params": {**PARAMS["params"], "downtime_jail_duration": "forever"}}, "not a duration"),
        ("infos", infos(address="cosmosvalcons1notachecksum"), "not a bech32"),
        ("infos", infos(missed_blocks_counter="1e9"), "missed_blocks_counter"),
        ("infos", infos(tombstoned="yes"), "tombstoned"),
        ("infos", b"<html>gateway</html>", "not JSON"),
        ("infos", 502, "HTTP 502"),
    ],
)
def test_a_bad_slashing_reply_keeps_the_status_and_says_why(known, lcd, part, reply, error):
    known.rest_url, replies = lcd
    set_replies(replies)
    refresh_status(known)  # a good read first: its counter must survive the bad one
    set_replies(replies, **{part: reply})
    read = refresh_status(known)
    assert error in read.slashing_error
    rest = ChainRestStatus.objects.get(chain=known)
    assert error in rest.last_error and rest.last_error_at is not None
    assert rest.signed_blocks_window == 100  # the last good params are kept
    assert ValidatorStatus.objects.get(validator__address=ADDRESSES[0]).missed_blocks_counter == 7
    assert not index_chain(known, sets=False)  # the pass counts as failed for this chain


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (500, "HTTP 500"),
        (staking(tokens="1" * 60), "tokens"),
        (staking(commission={"commission_rates": {"rate": "NaN"}}), "commission"),
        ({"validators": "all of them"}, "expected a list"),
    ],
)
def test_a_bad_staking_reply_changes_nothing(known, lcd, reply, error):
    known.rest_url, replies = lcd
    set_replies(replies, staking=reply)
    with pytest.raises(IndexerError, match=error):
        refresh_status(known)
    assert not ValidatorStatus.objects.exists()
    assert set(Validator.objects.values_list("moniker", flat=True)) == {"kept"}
    assert error in ChainRestStatus.objects.get(chain=known).last_error


@pytest.mark.django_db
def test_a_dripping_rest_api_is_cut_by_the_total_deadline(known, lcd):
    known.rest_url, replies = lcd
    set_replies(replies, params=0.2)  # 14 bytes, 0.2 s each: ~3 s in all
    started = time.monotonic()
    read = refresh_status(known, budget=1.0)
    assert time.monotonic() - started < 2.5
    assert "slashing params not read" in read.slashing_error
    assert ValidatorStatus.objects.filter(validator__address=ADDRESSES[0]).exists()  # staking was in time


@pytest.mark.django_db
def test_a_chain_without_rest_api_says_why(known):
    assert refresh_status(known).slashing_error == NO_REST
    assert ChainRestStatus.objects.get(chain=known).last_error == NO_REST
    assert index_chain(known, sets=False)  # not an error: the chain simply has no REST API


def test_rest_urls_from_the_command_line():
    assert parse_rest_urls(["a=https://lcd.example/", " b = http://h:1317"]) == {
        "a": "https://lcd.example",
        "b": "http://h:1317",
    }
    for bad, why in (
        ("nourl", "expected NAME=URL"),
        ("a=", "expected NAME=URL"),
        ("a=ftp://x", "http"),
        ("a=https://", "http"),
        ("a b=https://x", "not a chain name"),
        ("a=https://lcd.example/?apikey=k", "no query"),
        ("a=https://lcd.example/" + "p" * 300, "longer than 200"),
    ):
        with pytest.raises(ValueError, match=why):
            parse_rest_urls([bad])
    # A value's credentials or key are never repeated, whatever is wrong with it.
    for secret in ("https://user:hunter2@lcd.example", "cosmoshub https://user:hunter2@x", "a=gopher://u:hunter2@x"):
        with pytest.raises(ValueError, match="--rest #1") as exc:
            parse_rest_urls([secret])
        assert "hunter2" not in str(exc.value)
