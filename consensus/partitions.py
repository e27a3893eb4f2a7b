"""The vote tables (votes, and their signatures when kept) are range-partitioned by (chain,
height), the same bounds for both: one partition per chain per
`Chain.partition_heights` heights (100,000 by default: about a week of a 6 s chain, a day of a
0.9 s one).

Why by height and not by time: the natural key (chain, height, round, type, validator) is the
primary key, and PostgreSQL requires a partitioned table's keys to contain the partition key. A
time-partitioned table could not refuse a redelivered vote received at another moment. And every
query ctop makes names a chain and a height range, so the planner opens one or two partitions.

Partitions are made ahead of need by the processes that write (the stream consumer, and `save()`
for the rare ORM write), each in its own short transaction: a batch never waits for a lock it
would hold against another worker. Retention detaches and drops whole partitions (instant, no
dead rows), and compacts the index of partitions no longer written (see `compact`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from django.db import DatabaseError, connection, transaction

log = logging.getLogger("ctop.partitions")

PARENT = "consensus_vote"  # the partitions listed, dropped and compacted are this table's...
PARENTS = (PARENT, "consensus_votesignature")  # ...and each has its twin in the signatures table
# Make the next partition once a chain is this far into its current one: an idle day, a restart
# or a slow lock never leaves the writers without a partition for the next height.
AHEAD = 0.8
LOCK_TIMEOUT_MS = 5_000  # creating or detaching a partition waits this long for long readers
_BOUND = re.compile(r"FROM \('?(-?\d+)'?, '?(-?\d+)'?\) TO \('?(-?\d+)'?, '?(-?\d+)'?\)")


@dataclass(frozen=True, order=True)
class Partition:
    chain_id: int
    lo: int  # first height
    hi: int  # one past the last height
    name: str


def partition_name(chain_id: int, lo: int, parent: str = PARENT) -> str:
    return f"{parent}_c{chain_id}_h{lo}"


def existing(chain_id: int | None = None) -> list[Partition]:
    """The vote partitions, read from the catalog (their bounds, not their names, are the truth)."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
            [PARENT],
        )
        rows = cur.fetchall()
    found = []
    for name, bound in rows:
        m = _BOUND.search(bound or "")
        if not m:
            continue  # not one of ours (a DEFAULT partition an operator added by hand)
        c, lo, _, hi = (int(g) for g in m.groups())
        if chain_id is None or c == chain_id:
            found.append(Partition(c, lo, hi, name))
    return sorted(found)


def span_of(chain_id: int) -> int:
    from .models import Chain

    return Chain.objects.values_list("partition_heights", flat=True).get(pk=chain_id)


def create(chain_id: int, lo: int, hi: int) -> bool:
    """CREATE the partition [lo, hi) of a chain in each vote table unless it exists (True: made
    now). A race with another writer is harmless: one makes it, the other finds it."""
    made = False
    for parent in PARENTS:
        name = partition_name(chain_id, lo, parent)
        with connection.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", [f'"{name}"'])
            if cur.fetchone()[0] is not None:
                continue
        try:
            with transaction.atomic(), connection.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}")
                cur.execute(
                    f'CREATE TABLE "{name}" PARTITION OF {parent}'
                    f" FOR VALUES FROM ({int(chain_id)}, {int(lo)}) TO ({int(chain_id)}, {int(hi)})"
                )
        except DatabaseError as exc:
            cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
            if isinstance(cause, (psycopg.errors.DuplicateTable, psycopg.errors.UniqueViolation)):
                continue
            raise
        made = True
    if made:
        log.info("vote partitions c%s_h%s: chain %s heights %s..%s", chain_id, lo, chain_id, lo, hi - 1)
    return made


def ensure_range(chain_id: int, lo: int, hi: int) -> None:
    """Every partition a chain needs for heights lo..hi (bulk loads: benchmarks, tests)."""
    span = span_of(chain_id)
    for start in range(lo - lo % span, hi + 1, span):
        create(chain_id, start, start + span)


class PartitionCache:
    """What partitions a writer has made sure of, so a batch costs a set look-up, not a query. A
    writer holds its own (a rolled-back test transaction can take a partition away again: on
    "no partition for row" the writer forgets and makes sure again)."""

    def __init__(self) -> None:
        self._spans: dict[int, int] = {}
        self._known: set[tuple[int, int]] = set()  # (chain_id, lo)

    def ensure(self, keys: Iterable[tuple[int, int]]) -> None:
        """`keys`: (chain_id, height) of the rows about to be written. The partition a row falls in
        is required (its failure raises: the batch is retried); the one ahead is best effort (a
        lock held by a backup must not stop ingestion: it is tried again with the next batch)."""
        for chain_id, height in keys:
            span = self._spans.get(chain_id)
            if span is None:
                span = self._spans[chain_id] = span_of(chain_id)
            lo = height - height % span
            if (chain_id, lo) not in self._known:
                create(chain_id, lo, lo + span)
                self._known.add((chain_id, lo))
            if height - lo >= AHEAD * span and (chain_id, lo + span) not in self._known:
                try:
                    create(chain_id, lo + span, lo + 2 * span)
                except DatabaseError as exc:
                    log.warning("vote partition ahead of chain %s not made yet (%s); trying again later", chain_id, exc)
                    continue
                self._known.add((chain_id, lo + span))

    def forget(self) -> None:
        self._known.clear()
        self._spans.clear()


def detach_and_drop(part: Partition) -> None:
    """Detach without blocking writers (CONCURRENTLY: outside any transaction; a detach left
    pending by an interrupted run is finished first), then drop; the signatures twin before the
    vote partition, so a failure never leaves a twin nobody lists."""
    with connection.cursor() as cur:
        for parent in reversed(PARENTS):
            name = partition_name(part.chain_id, part.lo, parent) if parent != PARENT else part.name
            cur.execute(
                "SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE c.relname = %s",
                [name],
            )
            row = cur.fetchone()
            if row is not None:
                if connection.in_atomic_block:  # a chain's deletion, a test: a plain detach
                    # Deferred foreign-key checks of rows written in this transaction run now, or
                    # the table they concern could not be dropped.
                    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    cur.execute(f'ALTER TABLE {parent} DETACH PARTITION "{name}"')
                    cur.execute("SET CONSTRAINTS ALL DEFERRED")
                elif row[0]:
                    cur.execute(f'ALTER TABLE {parent} DETACH PARTITION "{name}" FINALIZE')
                else:
                    cur.execute(f'ALTER TABLE {parent} DETACH PARTITION "{name}" CONCURRENTLY')
            cur.execute(f'DROP TABLE IF EXISTS "{name}"')
    log.info("vote partition %s dropped: chain %s heights %s..%s", part.name, part.chain_id, part.lo, part.hi - 1)


def drop_below(chain_id: int, below: int, dry_run: bool = False) -> list[Partition]:
    """Drop the partitions of a chain whose every height is below `below`. A partition that
    straddles `below` stays whole: retention keeps at most one partition more than asked."""
    gone = [p for p in existing(chain_id) if p.hi <= below]
    if dry_run:
        return gone
    dropped = []
    for p in gone:
        try:
            detach_and_drop(p)
        except DatabaseError as exc:  # one stuck partition must not stop the others' retention
            log.warning("vote partition %s not dropped this time: %s", p.name, exc)
            continue
        dropped.append(p)
    return dropped


def drop_chain(chain_id: int) -> None:
    """Every partition of a chain goes: deleting a chain must not wait for millions of DELETEs."""
    for p in existing(chain_id):
        detach_and_drop(p)


def compact(chain_id: int, latest_height: int) -> list[Partition]:
    """Rebuild the primary-key index of partitions no longer written (wholly below the chain's
    latest height) packed full. Votes arrive in random validator order within a height, so the
    live index splits pages in the middle and sits ~70% full (~55 bytes a vote); rebuilt once at
    fillfactor 100 it takes ~36. Returns the partitions compacted now (each only once)."""
    done = []
    for p in existing(chain_id):
        if p.hi > latest_height:
            continue
        index = f"{p.name}_pkey"
        with connection.cursor() as cur:
            cur.execute("SELECT reloptions FROM pg_class WHERE relname = %s", [index])
            row = cur.fetchone()
            if row is None or (row[0] and "fillfactor=100" in row[0]):
                continue
            cur.execute(f'ALTER INDEX "{index}" SET (fillfactor = 100)')
            concurrently = "" if connection.in_atomic_block else " CONCURRENTLY"
            cur.execute(f'REINDEX INDEX{concurrently} "{index}"')
        done.append(p)
        log.info("vote partition %s compacted", p.name)
    return done
