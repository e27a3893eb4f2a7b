"""An existing database migrates in place to the compact, partitioned vote table (consensus 0007)
and the history tier (analysis 0010): every vote is there afterwards, with its block, its own
time and (when kept) its signature, in partitions made for the heights it holds; every verdict is
in the packed history; the pipeline's writes work on the result.

Runs in a database of its own, migrated to the schema before the change and filled as that
schema's pipeline filled it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from analysis.history import unpack

BEFORE = [
    ("consensus", "0006_feed_state_choices"),
    ("validators", "0003_validator_moved_to_consensus"),
    ("analysis", "0008_halt_help_precommit"),
]
T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def scratch_db(django_db_blocker):
    name = "test_ctop_migrate_votes"
    base = {**connections.settings["default"]}
    admin = f"host={base['HOST']} port={base['PORT']} user={base['USER']} dbname=postgres"
    with django_db_blocker.unblock():
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        connections.settings["scratch"] = {**base, "NAME": name}
        try:
            yield connections["scratch"]
        finally:
            connections["scratch"].close()
            del connections["scratch"]
            del connections.settings["scratch"]
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_votes_migrate_in_place_with_nothing_lost(scratch_db, monkeypatch):
    monkeypatch.setitem(settings.CTOP, "VOTE_SIGNATURES", True)
    MigrationExecutor(scratch_db).migrate(BEFORE)
    rng = random.Random(7)
    old = []  # (chain, height, round, type, validator, index, block, timestamp, received, signature)
    with scratch_db.cursor() as cur:
        cur.execute(
            "INSERT INTO consensus_chain (name, chain_id, enabled, rest_url, created_at) VALUES"
            " ('busy', 'busy-1', true, '', now()), ('jumpy', 'jumpy-1', true, '', now()) RETURNING id"
        )
        chains = [row[0] for row in cur.fetchall()]
        validators: dict[int, list[int]] = {}
        for c in chains:
            validators[c] = []
            for i in range(4):
                cur.execute(
                    "INSERT INTO validators_validator (chain_id, address, pub_key_type, pub_key, moniker,"
                    " operator_address, first_seen_at, updated_at) VALUES (%s, %s, '', '', '', '', now(), now())"
                    " RETURNING id",
                    [c, f"{c:02X}{i:038X}"],
                )
                validators[c].append(cur.fetchone()[0])
        # "busy" crosses a partition boundary (99,990..100,009); "jumpy" restarted from a snapshot
        # far ahead (heights 5..9, then 3,000,000..3,000,004).
        heights = {chains[0]: range(99_990, 100_010), chains[1]: [*range(5, 10), *range(3_000_000, 3_000_005)]}
        for c, hs in heights.items():
            for h in hs:
                block = rng.randbytes(32)
                for t in (1, 2):
                    for i, vid in enumerate(validators[c]):
                        received = T0 + timedelta(seconds=h % 1000, milliseconds=rng.randint(0, 999))
                        own = received - timedelta(milliseconds=rng.randint(-500, 2000))
                        nil = (h + i) % 7 == 0
                        old.append((c, h, 0, t, vid, i, None if nil else block, own, received, rng.randbytes(64)))
        with cur.copy(
            "COPY consensus_vote (chain_id, height, round, type, validator_id, validator_index, block_hash,"
            ' "timestamp", received_at, signature) FROM STDIN'
        ) as copy:
            for row in old:
                copy.write_row(row)
        # Verdicts judged before the history tier: they are packed into it.
        busy = chains[0]
        verdicts = {}  # (height, validator) -> (prevotes, precommits)
        for h in range(99_990, 99_995):
            rounds = 2 if h == 99_992 else 1
            cur.execute(
                "INSERT INTO analysis_heightverdict (chain_id, height, judged_at, rounds, unknown, total_power,"
                " missed_validators, from_commit) VALUES (%s, %s, now(), %s, %s, 40, 0, false)",
                [busy, h, rounds, h == 99_993],
            )
            for vid in validators[busy]:
                pv = "".join(rng.choice("SNMUL") for _ in range(rounds))
                pc = "".join(rng.choice("SNMU") for _ in range(rounds))
                verdicts[(h, vid)] = (pv, pc)
                cur.execute(
                    "INSERT INTO analysis_validatorverdict (chain_id, height, validator_id, power, prevotes,"
                    " precommits, missed) VALUES (%s, %s, %s, 10, %s, %s, %s)",
                    [busy, h, vid, pv, pc, "M" in pv + pc],
                )

    executor = MigrationExecutor(scratch_db)
    executor.migrate(executor.loader.graph.leaf_nodes())

    with scratch_db.cursor() as cur:
        cur.execute(
            "SELECT chain_id, height, round, type, validator_id, block_tag, received_at, skew FROM consensus_vote"
        )
        new = {r[:5]: r[5:] for r in cur.fetchall()}
        cur.execute("SELECT chain_id, height, round, type, validator_id, signature FROM consensus_votesignature")
        signatures = {r[:5]: bytes(r[5]) for r in cur.fetchall()}
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c"
            " ON c.oid = i.inhrelid WHERE i.inhparent = 'consensus_vote'::regclass ORDER BY 1"
        )
        parts = dict(cur.fetchall())
    assert len(new) == len(old) and len(signatures) == len(old)
    for c, h, r, t, vid, _i, block, own, received, sig in old:
        tag, stored_received, skew = new[(c, h, r, t, vid)]
        assert tag == (int.from_bytes(block[:4], "big", signed=True) if block else None)
        assert stored_received == received
        assert abs((stored_received + timedelta(milliseconds=10 * skew)) - own) <= timedelta(milliseconds=5)
        assert signatures[(c, h, r, t, vid)] == sig
    # Partitions only where there are votes: two for the boundary, two for the snapshot jump.
    jumpy = chains[1]
    assert sorted(parts) == sorted(
        [
            f"consensus_vote_c{busy}_h0",
            f"consensus_vote_c{busy}_h100000",
            f"consensus_vote_c{jumpy}_h0",
            f"consensus_vote_c{jumpy}_h3000000",
        ]
    )
    assert parts[f"consensus_vote_c{busy}_h100000"] == f"FOR VALUES FROM ('{busy}', '100000') TO ('{busy}', '200000')"

    # Every verdict is in the history, packed: one row a height, one set for the four validators.
    with scratch_db.cursor() as cur:
        cur.execute(
            "SELECT h.height, h.rounds, h.unknown, h.letters, s.validators FROM analysis_heighthistory h"
            " JOIN analysis_voterset s ON s.id = h.voters_id WHERE h.chain_id = %s ORDER BY h.height",
            [busy],
        )
        packed = cur.fetchall()
    expected = [(h, 2 if h == 99_992 else 1, h == 99_993) for h in range(99_990, 99_995)]
    assert [(h, r, u) for h, r, u, _, _ in packed] == expected
    for h, _, _, letters, voters in packed:
        assert voters == sorted(validators[busy])
        for i, vid in enumerate(voters):
            assert unpack(bytes(letters), len(voters), i) == verdicts[(h, vid)]

    # The stream's writes on the result: a redelivered vote changes nothing, a new one lands.
    with scratch_db.cursor() as cur:
        insert = (
            "INSERT INTO consensus_vote (height, received_at, validator_id, block_tag, chain_id, round, type, skew)"
            " VALUES (%s, now(), %s, 1, %s, 0, %s, 0) ON CONFLICT DO NOTHING"
        )
        cur.execute(insert, [100_000, validators[busy][0], busy, 1])
        assert cur.rowcount == 0
        cur.execute(insert, [100_010, validators[busy][0], busy, 1])
        assert cur.rowcount == 1
