"""Retention of the analysis record: verdicts older than a cutoff go, in batches, by height (the
same way consensus.retention prunes events). Verdicts are small beside the votes they summarise,
so they are kept longer: prune_events prunes them only when asked (--verdicts-older-than)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from consensus.models import Chain
from consensus.retention import PruneReport, first_height_since, prune_below

from .models import HeightVerdict, RoundVerdict, ValidatorVerdict

# Every per-height table of the analysis, (chain_id, height) leading its natural key.
VERDICT_TABLES = [ValidatorVerdict, RoundVerdict, HeightVerdict]


def prune_verdicts(
    report: PruneReport, *, cutoff: datetime, chains: Iterable[Chain], batch_size: int = 10_000, dry_run: bool = False
) -> None:
    """Delete (or count) the verdicts of heights judged before `cutoff`."""
    for chain in chains:
        below = first_height_since(HeightVerdict, chain, "judged_at", cutoff)
        if below is not None:
            prune_below(report, chain, VERDICT_TABLES, below, batch_size, dry_run)
