"""Retention: old votes go a whole partition at a time (consensus.partitions: instant, no dead
rows); the small per-height tables are deleted in short batches, never holding long locks.

Old rows are found by height, not by time: "the first height with an event newer than the
cutoff" is one walk along the natural-key index, and "height < cut" then uses the same index for
every batch. No timestamp index is needed on the big tables just for retention.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, models, transaction

from . import partitions
from .models import Block, Chain, CommitSignature, DeadLetter, Gap, Round, RoundStep, Vote

log = logging.getLogger(__name__)

# The event tables deleted in batches, with (chain_id, height) leading their natural-key index:
# pruned by height. Votes go by partition. (The analysis prunes its own tables: analysis.retention.)
HEIGHT_TABLES: list[type[models.Model]] = [RoundStep, CommitSignature, Round]
VOTE_PARTITIONS = "consensus.Vote partitions"
# A partition is compacted once the chain is this many heights past its end (late votes are done).
COMPACT_AFTER = 1_000


@dataclass
class PruneReport:
    cut_heights: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, n: int) -> None:
        self.deleted[label] = self.deleted.get(label, 0) + n


def first_height_since(model: type[models.Model], chain: Chain, time_field: str, cutoff: datetime) -> int | None:
    """The lowest height of `model` with `time_field` at or after `cutoff`; if every row is older,
    one past the highest; None for a chain with no rows."""
    qs = model.objects.filter(chain=chain)
    first_new = qs.filter(**{f"{time_field}__gte": cutoff}).order_by("height").values_list("height", flat=True).first()
    if first_new is not None:
        return first_new
    last = qs.order_by("-height").values_list("height", flat=True).first()
    return last + 1 if last is not None else None


def cut_height(chain: Chain, cutoff: datetime) -> int | None:
    """The lowest height that has an event received at or after `cutoff` (rows below it go).

    None when the chain has no events at all. If every event is older, everything goes.
    """
    for model, time_field in ((Round, "started_at"), (Vote, "received_at")):
        height = first_height_since(model, chain, time_field, cutoff)
        if height is not None:
            return height
    return None


def delete_in_batches(table: str, where: str, params: list, batch_size: int) -> int:
    """DELETE ... WHERE `where`, `batch_size` rows per short transaction (no long locks)."""
    total = 0
    # By ctid, the row's physical address: tables keyed by their natural key have no id column.
    sql = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608 - table names and conditions are ours
        f"SELECT ctid FROM {table} WHERE {where} LIMIT %s))"
    )
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch_size])
            n = cursor.rowcount
        total += n
        if n < batch_size:
            return total


def prune_below(
    report: PruneReport, chain: Chain, tables: Iterable[type[models.Model]], below: int, batch_size: int, dry_run: bool
) -> None:
    """Delete (or count) the rows of `tables` below height `below` of `chain`, in batches."""
    for model in tables:
        label = model._meta.label
        if dry_run:
            report.add(label, model.objects.filter(chain=chain, height__lt=below).count())
            continue
        n = delete_in_batches(model._meta.db_table, "chain_id = %s AND height < %s", [chain.pk, below], batch_size)
        report.add(label, n)
        if n:
            log.info("prune %s: %s rows of %s below height %s", chain.name, n, label, below)


def prune(*, cutoff: datetime, chains: Iterable[Chain], batch_size: int = 10_000, dry_run: bool = False) -> PruneReport:
    report = PruneReport()
    chains = list(chains)
    for chain in chains:
        below = cut_height(chain, cutoff)
        if below is None:
            continue
        report.cut_heights[chain.name] = below
        report.add(VOTE_PARTITIONS, len(partitions.drop_below(chain.pk, below, dry_run)))
        prune_below(report, chain, HEIGHT_TABLES, below, batch_size, dry_run)
        gaps = Gap.objects.filter(chain=chain, to_height__lt=below)
        report.add(Gap._meta.label, gaps.count() if dry_run else gaps.delete()[0])
    if not dry_run:
        for chain in chains:
            latest = Round.objects.filter(chain=chain).order_by("-height").values_list("height", flat=True).first()
            if latest is not None:
                compacted = partitions.compact(chain.pk, latest - COMPACT_AFTER)
                report.add("consensus.Vote partitions compacted", len(compacted))
    if dry_run:
        report.add(DeadLetter._meta.label, DeadLetter.objects.filter(created_at__lt=cutoff).count())
    else:
        n = delete_in_batches(DeadLetter._meta.db_table, "created_at < %s", [cutoff], batch_size)
        report.add(DeadLetter._meta.label, n)
    return report


def purge_chain(chain: Chain) -> None:
    """Every per-height row of a chain, before the chain itself goes: its vote partitions are
    dropped, the other tables deleted in SQL (no Python-side cascade over millions of rows)."""
    partitions.drop_chain(chain.pk)
    with connection.cursor() as cursor:
        for model in [*HEIGHT_TABLES, Block, Gap, DeadLetter]:
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE chain_id = %s", [chain.pk])  # noqa: S608
