"""On-disk bytes per stored vote (ctop's layout, the layout before it, consensus 0006, and the
original ctop's) and per judged height of the history tier, letters and vote delays, and of the
block metas beside it (against the per-validator verdict rows it stands beside), the same data in
the same run.

.venv/bin/python -m benchmarks.bench_storage [--heights 2000] [--validators 150]

Votes are written as they arrive (a height's prevotes, then its precommits, validators in random
order), so the indexes split as they do in production. ctop's partitions are measured as written
(the partition being filled) and after retention's one-time compaction (every older one).
"""

from __future__ import annotations

import argparse
import os
import random
from datetime import UTC, datetime, timedelta

from benchmarks._setup import setup_django

PREVIOUS_DDL = """
CREATE TABLE bench_previous_vote (
    id bigserial PRIMARY KEY, height bigint NOT NULL, "timestamp" timestamptz NOT NULL,
    received_at timestamptz NOT NULL, chain_id smallint NOT NULL, type smallint NOT NULL,
    round smallint NOT NULL, validator_id integer NOT NULL, validator_index integer NOT NULL,
    block_hash bytea NULL, signature bytea NULL,
    CONSTRAINT bench_previous_natural_key UNIQUE (chain_id, height, round, type, validator_id)
)"""

ORIGINAL_DDL = """
CREATE TABLE bench_original_vote_events (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    network text, vote_type text, height int4, round int, block_id text,
    block_timestamp timestamptz, validator_address text, validator_index text,
    validator_signature bytea
)"""


def sizes(cur, relation: str) -> tuple[int, dict[str, int]]:
    """(heap bytes, {index: bytes}) of a table, or of every leaf partition of a partitioned one."""
    # A plain table is its own only leaf (pg_partition_tree lists nothing for it).
    tree = (
        "(SELECT relid, isleaf, level FROM pg_partition_tree(%s) UNION ALL SELECT %s::regclass, true, 0"
        " WHERE NOT EXISTS (SELECT FROM pg_partition_tree(%s))) t"
    )
    args = [relation] * 3
    cur.execute(f"SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM {tree} WHERE isleaf", args)  # noqa: S608
    heap = cur.fetchone()[0]
    cur.execute(
        "SELECT CASE WHEN t.level > 0 THEN 'primary key' ELSE ic.relname END, sum(pg_relation_size(ic.oid))"  # noqa: S608
        f" FROM {tree} JOIN pg_index i ON i.indrelid = t.relid JOIN pg_class ic ON ic.oid = i.indexrelid"
        " WHERE t.isleaf GROUP BY 1",
        args,
    )
    return int(heap), {name: int(n) for name, n in cur.fetchall()}


def line(label: str, heap: int, indexes: dict[str, int], n: int) -> float:
    total = (heap + sum(indexes.values())) / n
    parts = "; ".join(f"{name} {size / n:.1f}" for name, size in indexes.items())
    print(f"  {label:<34} {total:7.1f} bytes/vote  (heap {heap / n:.1f}; {parts})")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heights", type=int, default=2000)
    parser.add_argument("--validators", type=int, default=150)
    args = parser.parse_args()
    setup_django()
    from django.db import connection

    from consensus import partitions
    from consensus.models import Chain, Validator, block_tag, skew_of

    chain, _ = Chain.objects.get_or_create(name="bench-storage")
    with connection.cursor() as cur:
        # TRUNCATE, not DELETE: sizes must not include dead rows. Old partitions go (the span may differ).
        for p in partitions.existing(chain.pk):
            cur.execute(f'DROP TABLE "{p.name}"')
    addresses = [os.urandom(20).hex().upper() for _ in range(args.validators)]
    Validator.objects.bulk_create([Validator(chain=chain, address=a) for a in addresses], ignore_conflicts=True)
    ids = dict(Validator.objects.filter(chain=chain).values_list("address", "id"))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    # Two partitions: the first compacted as retention leaves it, the second as written.
    Chain.objects.filter(pk=chain.pk).update(partition_heights=args.heights // 2)
    partitions.ensure_range(chain.pk, 0, args.heights)
    for h in range(args.heights):
        block = os.urandom(32)
        for vtype in (1, 2):
            for i in random.sample(range(args.validators), args.validators):
                nil = random.random() < 0.01
                received = t0 + timedelta(seconds=6 * h + vtype, milliseconds=random.randint(0, 900))
                signed = received - timedelta(milliseconds=random.randint(50, 400))
                rows.append((h, i, addresses[i], vtype, None if nil else block, signed, received, os.urandom(64)))
    n = len(rows)
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_previous_vote, bench_original_vote_events")
        cur.execute(PREVIOUS_DDL)
        cur.execute(ORIGINAL_DDL)
        with cur.copy(
            "COPY consensus_vote (height, received_at, validator_id, block_tag, chain_id, round, type, skew) FROM STDIN"
        ) as copy:
            for h, _i, addr, vtype, block, ts, recv, _sig in rows:
                copy.write_row((h, recv, ids[addr], block_tag(block), chain.pk, 0, vtype, skew_of(ts, recv)))
        with cur.copy(
            "COPY bench_previous_vote (chain_id, height, round, type, validator_id, validator_index, block_hash,"
            ' "timestamp", received_at, signature) FROM STDIN'
        ) as copy:
            for h, i, addr, vtype, block, ts, recv, sig in rows:
                copy.write_row((chain.pk, h, 0, vtype, ids[addr], i, block, ts, recv, sig))
        with cur.copy(
            "COPY bench_original_vote_events (network, vote_type, height, round, block_id, block_timestamp,"
            " validator_address, validator_index, validator_signature) FROM STDIN"
        ) as copy:
            for h, i, addr, vtype, block, ts, _recv, sig in rows:
                kind = "SIGNED_MSG_TYPE_PREVOTE" if vtype == 1 else "SIGNED_MSG_TYPE_PRECOMMIT"
                copy.write_row((chain.name, kind, h, 0, block.hex().upper() if block else "", ts, addr, str(i), sig))
        for table in ("bench_previous_vote", "bench_original_vote_events"):
            cur.execute(f"VACUUM ANALYZE {table}")
        written = sizes(cur, "consensus_vote")
        first = partitions.existing(chain.pk)[0]
        partitions.compact(chain.pk, first.hi)
        compacted_heap, compacted_idx = sizes(cur, first.name)
        first_rows = sum(1 for r in rows if r[0] < first.hi)
        previous = sizes(cur, "bench_previous_vote")
        original = sizes(cur, "bench_original_vote_events")
        cur.execute("DROP TABLE bench_previous_vote, bench_original_vote_events")
        for p in partitions.existing(chain.pk):
            cur.execute(f'DROP TABLE "{p.name}"')
    print(f"votes stored: {n:,} ({args.validators} validators x {args.heights:,} heights x 2 types, arrival order)")
    ours = line("ctop, compacted (older partitions)", compacted_heap, compacted_idx, first_rows)
    live = line("ctop, as written (newest partition)", *written, n)
    before = line("before (0006: id, hash, signature)", *previous, n)
    orig = line("original ctop (uuid, text columns)", *original, n)
    print(
        f"ratio: {ours / before:.2f}x of the layout before (as written {live / before:.2f}x),"
        f" {ours / orig:.2f}x of the original's"
    )
    history_per_height(chain, [ids[a] for a in addresses], args.heights)


def history_per_height(chain, validator_ids: list[int], heights: int) -> None:
    """A judged height as the history tier keeps it (one packed row) and as the verdict rows do
    (one row per validator), the same verdicts: 1 height in 50 takes two rounds, 1 vote in 100 missed."""
    from django.db import connection
    from django.utils import timezone

    from analysis import history, latency

    rng = random.Random(1)
    now = timezone.now()
    voters = sorted(validator_ids)
    n = len(voters)
    with connection.cursor() as cur:
        # Tables of their own, shaped as ctop's (LIKE ... INCLUDING ALL): nothing else in them, no dead rows.
        cur.execute("DROP TABLE IF EXISTS bench_history, bench_verdicts")
        cur.execute("CREATE TABLE bench_history (LIKE analysis_heighthistory INCLUDING ALL)")
        cur.execute("CREATE TABLE bench_verdicts (LIKE analysis_validatorverdict INCLUDING ALL)")
        verdicts = []
        for h in range(heights):
            rounds = 2 if h % 50 == 0 else 1
            letters = {
                vid: (
                    1000,
                    "".join("M" if rng.random() < 0.01 else "S" for _ in range(rounds)),
                    "".join("M" if rng.random() < 0.01 else "S" for _ in range(rounds)),
                )
                for vid in voters
            }
            verdicts.append((h, rounds, letters))
        with cur.copy(
            "COPY bench_verdicts (chain_id, height, validator_id, power, prevotes, precommits, missed) FROM STDIN"
        ) as copy:
            for h, _, letters in verdicts:
                for vid, (power, pv, pc) in letters.items():
                    copy.write_row((chain.pk, h, vid, power, pv, pc, "M" in pv + pc))
        set_id = history.VoterSets().id_of(cur, chain.pk, voters)
        with cur.copy(
            "COPY bench_history (chain_id, height, judged_at, voters_id, rounds, unknown, from_commit, letters,"
            " delays, round_info) FROM STDIN"
        ) as copy:
            for h, rounds, letters in verdicts:
                # Each vote's arrival delay (10 ms units: 0-1 s, as on a chain with 150 validators
                # around the world) and each round's proposer and quorum times.
                delays = {vid: [(rng.randrange(100), rng.randrange(100)) for _ in range(rounds)] for vid in voters}
                info = [latency.RoundTiming(voters[h % n], latency.PROPOSED, (30, 40)) for _ in range(rounds)]
                copy.write_row(
                    (
                        chain.pk,
                        h,
                        now,
                        set_id,
                        rounds,
                        False,
                        False,
                        history.pack(letters, voters),
                        latency.pack_delays(delays, voters, rounds),
                        latency.pack_rounds(info),
                    )
                )
        # The block meta of each height (consensus.Block), the same long-term tier.
        cur.execute("CREATE TABLE bench_block (LIKE consensus_block INCLUDING ALL)")
        cur.execute(
            "INSERT INTO bench_block (chain_id, height, time, proposer_id, txs, size)"
            " SELECT %s, h, now(), (%s::int[])[h %% %s + 1], h %% 40, 20000 + h %% 9000 FROM generate_series(0, %s) h",
            [chain.pk, voters, n, heights - 1],
        )
        for table in ("bench_history", "bench_verdicts", "bench_block"):
            cur.execute(f"VACUUM ANALYZE {table}")
        packed = sizes(cur, "bench_history")
        rows = sizes(cur, "bench_verdicts")
        metas = sizes(cur, "bench_block")
        cur.execute("DROP TABLE bench_history, bench_verdicts, bench_block")
    print(f"history: {heights:,} judged heights of {n} validators")
    ours = (packed[0] + sum(packed[1].values())) / heights
    block = (metas[0] + sum(metas[1].values())) / heights
    before = (rows[0] + sum(rows[1].values())) / heights
    year = 365 * 86400 / 6
    print(f"  history tier (one packed row)      {ours:9.1f} bytes/height  -> {ours * year / 1e9:.2f} GB a year at 6 s")
    print(f"  block meta (consensus.Block)       {block:9.1f} bytes/height  -> {block * year / 1e9:.2f} GB a year")
    print(f"  verdict rows (one per validator)   {before:9.1f} bytes/height  -> {before * year / 1e9:.1f} GB a year")
    print(f"ratio: {ours / before:.3f}x")


if __name__ == "__main__":
    main()
