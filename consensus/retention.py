"""Retention: delete old consensus events in small batches, never holding long locks.

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

from .models import Chain, CommitSignature, DeadLetter, Gap, Round, RoundStep, Vote

log = logging.getLogger(__name__)

# Tables with (chain_id, height) leading their natural-key index; pruned by height.
HEIGHT_TABLES: list[type[models.Model]] = [Vote, RoundStep, CommitSignature, Round]


def register_height_table(model: type[models.Model]) -> None:
    """Other apps (analysis verdicts) add their per-height tables here."""
    if model not in HEIGHT_TABLES:
        HEIGHT_TABLES.insert(0, model)


@dataclass
class PruneReport:
    cut_heights: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)

    def add(self, label: str, n: int) -> None:
        self.deleted[label] = self.deleted.get(label, 0) + n


def cut_height(chain: Chain, cutoff: datetime) -> int | None:
    """The lowest height that has an event received at or after `cutoff` (rows below it go).

    None when the chain has no events at all. If every event is older, everything goes.
    """
    for model, time_field in ((Round, "started_at"), (Vote, "received_at")):
        qs = model.objects.filter(chain=chain)
        newer = qs.filter(**{f"{time_field}__gte": cutoff}).order_by("height").values_list("height", flat=True)
        first_new = newer.first()
        if first_new is not None:
            return first_new
        last = qs.order_by("-height").values_list("height", flat=True).first()
        if last is not None:
            return last + 1
    return None


def _delete_batches(table: str, where: str, params: list, batch_size: int) -> int:
    """DELETE ... WHERE `where`, `batch_size` rows per short transaction (no long locks)."""
    total = 0
    sql = (
        f"DELETE FROM {table} WHERE id IN "  # noqa: S608 - table names and conditions are ours, not input
        f"(SELECT id FROM {table} WHERE {where} LIMIT %s)"
    )
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch_size])
            n = cursor.rowcount
        total += n
        if n < batch_size:
            return total


def prune(*, cutoff: datetime, chains: Iterable[Chain], batch_size: int = 10_000, dry_run: bool = False) -> PruneReport:
    report = PruneReport()
    for chain in chains:
        below = cut_height(chain, cutoff)
        if below is None:
            continue
        report.cut_heights[chain.name] = below
        for model in HEIGHT_TABLES:
            label = model._meta.label
            if dry_run:
                report.add(label, model.objects.filter(chain=chain, height__lt=below).count())
            else:
                n = _delete_batches(
                    model._meta.db_table, "chain_id = %s AND height < %s", [chain.pk, below], batch_size
                )
                report.add(label, n)
                if n:
                    log.info("prune %s: %s rows of %s below height %s", chain.name, n, label, below)
        gaps = Gap.objects.filter(chain=chain, to_height__lt=below)
        report.add(Gap._meta.label, gaps.count() if dry_run else gaps.delete()[0])
    if dry_run:
        report.add(DeadLetter._meta.label, DeadLetter.objects.filter(created_at__lt=cutoff).count())
    else:
        n = _delete_batches(DeadLetter._meta.db_table, "created_at < %s", [cutoff], batch_size)
        report.add(DeadLetter._meta.label, n)
    return report
