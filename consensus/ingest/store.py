"""Persisting a decoded batch in one transaction: COPY into staging tables, then INSERT ... SELECT
... ON CONFLICT on the natural keys, so a redelivered batch (or a second consumer) changes nothing."""

from __future__ import annotations

import logging

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction

from consensus.identity import MAX_VALIDATORS_PER_CHAIN, validator_ids
from consensus.models import DeadLetter, block_tag, skew_of
from consensus.partitions import PartitionCache

from .decode import Batch

log = logging.getLogger("ctop.stream")

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS stage_vote (
    height bigint, received_at timestamptz, validator_id integer, block_tag integer, chain_id smallint,
    round smallint, type smallint, skew smallint
) ON COMMIT DELETE ROWS
"""

# In the table's physical order (consensus 0007).
_VOTE_COLUMNS = "height, received_at, validator_id, block_tag, chain_id, round, type, skew"
_VOTE_TYPES = ["int8", "timestamptz", "int4", "int4", "int2", "int2", "int2", "int2"]
_INSERT_VOTES = (
    f"INSERT INTO consensus_vote ({_VOTE_COLUMNS}) SELECT {_VOTE_COLUMNS} FROM stage_vote ON CONFLICT DO NOTHING"  # noqa: S608
)


def _copy_votes(cur, rows: list[tuple]) -> int:
    """Votes straight into their table when none is already there (the common case, one pass);
    a batch that repeats stored votes (a redelivery) goes through the staging table and
    INSERT ... ON CONFLICT DO NOTHING instead, so it changes nothing."""
    try:
        with transaction.atomic():  # a savepoint: a conflict rolls back only this attempt
            with cur.copy(f"COPY consensus_vote ({_VOTE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_VOTE_TYPES)
                for row in rows:
                    copy.write_row(row)
            return len(rows)
    except (IntegrityError, psycopg.errors.UniqueViolation):  # COPY errors come unwrapped by Django
        pass
    cur.execute(_STAGING)
    with cur.copy(f"COPY stage_vote ({_VOTE_COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(_VOTE_TYPES)
        for row in rows:
            copy.write_row(row)
    cur.execute(_INSERT_VOTES)
    return cur.rowcount


_CACHE_LIMIT = 100_000  # (chain, address) -> id pairs kept in memory before starting afresh


class ValidatorCache:
    """(chain_id, address) -> validator id, remembered between batches; unknown validators are
    created (consensus.identity) so no vote is dropped for lack of a validator row."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str], int] = {}
        self.refused = 0  # votes not stored: their chain has too many validators already

    def resolve(self, wanted: set[tuple[int, str]]) -> dict[tuple[int, str], int]:
        missing = {k for k in wanted if k not in self._ids}
        if missing:
            if len(self._ids) + len(missing) > _CACHE_LIMIT:
                self._ids.clear()
                missing = set(wanted)
            by_chain: dict[int, set[str]] = {}
            for chain_id, address in missing:
                by_chain.setdefault(chain_id, set()).add(address)
            for chain_id, addresses in by_chain.items():
                for address, vid in validator_ids(chain_id, addresses, cap=MAX_VALIDATORS_PER_CHAIN).items():
                    self._ids[(chain_id, address)] = vid
        return self._ids

    def forget(self) -> None:
        self._ids.clear()


def persist(batch: Batch, validators: ValidatorCache, partitions: PartitionCache | None = None) -> dict[str, int]:
    """Write everything in `batch` atomically. Returns rows inserted per table (new rows only)."""
    partitions = partitions or PartitionCache()
    keys = {(v.chain_id, v.height) for v in batch.votes}
    # Partitions first, each in its own short transaction (never under this batch's locks).
    partitions.ensure(keys)
    try:
        return _persist(batch, validators)
    # "no partition of relation ... found for row": raw from COPY, wrapped by Django elsewhere.
    except (psycopg.errors.CheckViolation, IntegrityError) as exc:
        if "no partition" not in str(exc):
            raise
    # A partition this writer made went away (a rolled-back transaction, an operator): once more.
    log.warning("a vote partition is missing; making sure of them again")
    partitions.forget()
    partitions.ensure(keys)
    return _persist(batch, validators)


def _persist(batch: Batch, validators: ValidatorCache) -> dict[str, int]:
    keep_signatures = settings.CTOP["VOTE_SIGNATURES"]
    wanted = {(v.chain_id, v.address) for v in batch.votes}
    wanted |= {(k[0], r.proposer_address) for k, r in batch.rounds.items() if r.proposer_address}
    wanted |= {(k[0], s.address) for k, s in batch.commit_sigs.items() if s.address}
    counts: dict[str, int] = {}
    with transaction.atomic():
        ids = validators.resolve(wanted) if wanted else {}
        with connection.cursor() as cur:
            if batch.votes:
                rows = [
                    (h, recv, ids[(c, addr)], block_tag(block), c, r, t, skew_of(ts, recv))
                    for c, h, r, t, addr, _index, block, ts, recv, _sig in batch.votes
                    if (c, addr) in ids
                ]
                validators.refused += len(batch.votes) - len(rows)
                counts["votes"] = _copy_votes(cur, rows) if rows else 0
                if keep_signatures:
                    cur.executemany(
                        "INSERT INTO consensus_votesignature (height, validator_id, chain_id, round, type, signature)"
                        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [
                            (h, ids[(c, addr)], c, r, t, sig)
                            for c, h, r, t, addr, _index, _block, _ts, _recv, sig in batch.votes
                            if sig and (c, addr) in ids
                        ],
                    )
            if batch.rounds:
                rows = [
                    (
                        c,
                        h,
                        r,
                        row.started_at,
                        ids.get((c, row.proposer_address)) if row.proposer_address else None,
                        row.proposer_index,
                        row.block_hash,
                        row.proposal_at,
                        row.endpoint[:255],
                    )
                    for (c, h, r), row in batch.rounds.items()
                ]
                # Redelivered or split across batches: the earliest sighting of each moment wins, and
                # the vantage point is the first endpoint that reported the round.
                cur.executemany(
                    "INSERT INTO consensus_round (chain_id, height, round, started_at, proposer_id, proposer_index,"
                    " block_hash, proposal_at, endpoint) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (chain_id, height, round) DO UPDATE"
                    " SET started_at = LEAST(consensus_round.started_at, EXCLUDED.started_at),"
                    " proposer_id = COALESCE(consensus_round.proposer_id, EXCLUDED.proposer_id),"
                    " proposer_index = COALESCE(consensus_round.proposer_index, EXCLUDED.proposer_index),"
                    " block_hash = COALESCE(consensus_round.block_hash, EXCLUDED.block_hash),"
                    " proposal_at = LEAST(consensus_round.proposal_at, EXCLUDED.proposal_at),"
                    " endpoint = CASE WHEN consensus_round.endpoint = '' THEN EXCLUDED.endpoint"
                    " ELSE consensus_round.endpoint END",
                    rows,
                )
                counts["rounds"] = len(rows)
            if batch.steps:
                cur.executemany(
                    "INSERT INTO consensus_roundstep (chain_id, height, round, step, seen_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (chain_id, height, round, step) DO UPDATE"
                    " SET seen_at = LEAST(consensus_roundstep.seen_at, EXCLUDED.seen_at)",
                    [(*k, v) for k, v in batch.steps.items()],
                )
                counts["steps"] = len(batch.steps)
            if batch.commit_sigs:
                cur.executemany(
                    "INSERT INTO consensus_commitsignature (chain_id, height, validator_index, round, flag,"
                    " validator_id, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (c, h, i, s.round, s.flag, ids.get((c, s.address)) if s.address else None, s.timestamp)
                        for (c, h, i), s in batch.commit_sigs.items()
                    ],
                )
                counts["commit_signatures"] = len(batch.commit_sigs)
            if batch.gaps:
                cur.executemany(
                    "INSERT INTO consensus_gap (chain_id, from_height, to_height, reason, detected_at, backfilled_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (chain_id, from_height, to_height) DO UPDATE"
                    " SET backfilled_at = COALESCE(consensus_gap.backfilled_at, EXCLUDED.backfilled_at)",
                    [(*k, *v) for k, v in batch.gaps.items()],
                )
                counts["gaps"] = len(batch.gaps)
            if batch.statuses:
                # `since`: when the current state began, as the subscriber reckons it (reconnects of a
                # few seconds do not restart it); from older subscribers, when the state last changed.
                cur.executemany(
                    "INSERT INTO consensus_chainstatus (chain_id, state, endpoint, reason, height, updated_at,"
                    " interval, since) VALUES (%s, %s, %s, %s, %s, %s, %s, COALESCE(%s, %s)) ON CONFLICT (chain_id)"
                    " DO UPDATE SET state = EXCLUDED.state, endpoint = EXCLUDED.endpoint, reason = EXCLUDED.reason,"
                    " height = EXCLUDED.height, updated_at = EXCLUDED.updated_at, interval = EXCLUDED.interval,"
                    " since = CASE WHEN %s IS NOT NULL THEN EXCLUDED.since"
                    "  WHEN consensus_chainstatus.state = EXCLUDED.state THEN consensus_chainstatus.since"
                    "  ELSE EXCLUDED.since END"
                    " WHERE consensus_chainstatus.updated_at <= EXCLUDED.updated_at",
                    [
                        # the last three: COALESCE(since, updated_at), and whether since was reported
                        (
                            c,
                            s.state,
                            s.endpoint,
                            s.reason,
                            s.height,
                            s.updated_at,
                            s.interval,
                            s.since,
                            s.updated_at,
                            s.since,
                        )
                        for c, s in batch.statuses.items()
                    ],
                )
            if batch.dead:
                DeadLetter.objects.bulk_create(
                    [
                        DeadLetter(
                            chain_id=d.chain_id,
                            stream=d.stream,
                            entry_id=d.entry_id,
                            frame_index=d.frame_index,
                            payload=d.payload,
                            length=d.length,
                            reason=d.reason,
                        )
                        for d in batch.dead
                    ],
                    ignore_conflicts=True,
                )
                counts["dead_letters"] = len(batch.dead)
    return counts
