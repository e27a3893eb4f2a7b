"""On-disk bytes per stored vote: ctop's schema versus the original ctop's, same rows, same run.

.venv/bin/python -m benchmarks.bench_storage [--votes 200000]
"""

from __future__ import annotations

import argparse
import os
import random
from datetime import UTC, datetime, timedelta

from benchmarks._setup import setup_django

ORIGINAL_DDL = """
CREATE TABLE bench_original_vote_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    network text, vote_type text, height int4, round int, block_id text,
    block_timestamp timestamptz, validator_address text, validator_index text,
    validator_signature bytea
)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--votes", type=int, default=200_000)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from consensus.models import Chain, Validator

    with connection.cursor() as cur:
        cur.execute("TRUNCATE consensus_vote")  # TRUNCATE, not DELETE: sizes must not include dead rows
    chain, _ = Chain.objects.get_or_create(name="bench-storage")
    n_validators = 100
    addresses = [os.urandom(20).hex().upper() for _ in range(n_validators)]
    Validator.objects.bulk_create([Validator(chain=chain, address=a) for a in addresses], ignore_conflicts=True)
    ids = dict(Validator.objects.filter(chain=chain).values_list("address", "id"))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    per_height = n_validators * 2
    heights = args.votes // per_height
    for h in range(1, heights + 1):
        block = os.urandom(32)
        ts = t0 + timedelta(seconds=h)
        # As on the wire: all prevotes, then all precommits, validators in arrival (random) order.
        for vtype in (1, 2):
            for i in random.sample(range(n_validators), n_validators):
                nil = random.random() < 0.01
                rows.append((h, i, addresses[i], vtype, None if nil else block, ts, os.urandom(64)))
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_original_vote_events")
        cur.execute(ORIGINAL_DDL)
        with cur.copy(
            "COPY consensus_vote (chain_id, height, round, type, validator_id, validator_index, block_hash,"
            " timestamp, received_at, signature) FROM STDIN"
        ) as copy:
            for h, i, addr, vtype, block, ts, sig in rows:
                copy.write_row((chain.pk, h, 0, vtype, ids[addr], i, block, ts, ts, sig))
        with cur.copy(
            "COPY bench_original_vote_events (network, vote_type, height, round, block_id, block_timestamp,"
            " validator_address, validator_index, validator_signature) FROM STDIN"
        ) as copy:
            for h, i, addr, vtype, block, ts, sig in rows:
                copy.write_row(
                    (
                        chain.name,
                        "SIGNED_MSG_TYPE_PREVOTE" if vtype == 1 else "SIGNED_MSG_TYPE_PRECOMMIT",
                        h,
                        0,
                        block.hex().upper() if block else "",
                        ts,
                        addr,
                        str(i),
                        sig,
                    )
                )
        cur.execute("VACUUM ANALYZE consensus_vote")
        cur.execute("VACUUM ANALYZE bench_original_vote_events")
        cur.execute(
            "SELECT pg_total_relation_size('consensus_vote'), pg_total_relation_size('bench_original_vote_events')"
        )
        ours, original = cur.fetchone()
        cur.execute(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE i.indrelid = 'consensus_vote'::regclass"
        )
        index_sizes = cur.fetchall()
        cur.execute("SELECT pg_relation_size('consensus_vote')")
        heap = cur.fetchone()[0]
        cur.execute("DROP TABLE bench_original_vote_events")
        cur.execute("TRUNCATE consensus_vote")
    n = len(rows)
    print(f"votes stored: {n} ({n_validators} validators, {heights} heights, 64-byte signatures)")
    print(f"ctop      : {ours / n:6.1f} bytes/vote (table + indexes)")
    print(f"original  : {original / n:6.1f} bytes/vote (uuid key, text columns, no unique key)")
    print(f"  heap {heap / n:.1f}; " + "; ".join(f"{name} {size / n:.1f}" for name, size in index_sizes))
    print(f"ratio     : {ours / original:.2f}x of the original")


if __name__ == "__main__":
    main()
