"""Retention of the analysis record: verdicts older than a cutoff go, in batches, by height (the
same way consensus.retention prunes events), and so does the history tier, separately: the
per-validator verdicts are a hot tier (--verdicts-older-than), the packed history the long-term
record (--history-older-than, with the block metas; kept until asked)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from consensus.models import Block, Chain
from consensus.retention import PruneReport, first_height_since, prune_below

from .models import HeightHistory, HeightVerdict, RoundVerdict, ValidatorVerdict, VoterSet

# Every per-height table of the analysis, (chain_id, height) leading its natural key.
VERDICT_TABLES = [ValidatorVerdict, RoundVerdict, HeightVerdict]
# Everything of a chain the analysis keeps, for deleting a chain (VoterSet after the rows using it).
CHAIN_TABLES = [*VERDICT_TABLES, HeightHistory, VoterSet]


def prune_verdicts(
    report: PruneReport, *, cutoff: datetime, chains: Iterable[Chain], batch_size: int = 10_000, dry_run: bool = False
) -> None:
    """Delete (or count) the verdicts of heights judged before `cutoff`."""
    for chain in chains:
        below = first_height_since(HeightVerdict, chain, "judged_at", cutoff)
        if below is not None:
            prune_below(report, chain, VERDICT_TABLES, below, batch_size, dry_run)


def prune_history(
    report: PruneReport, *, cutoff: datetime, chains: Iterable[Chain], batch_size: int = 10_000, dry_run: bool = False
) -> None:
    """Delete (or count) the history rows of heights judged before `cutoff`, and the block metas
    (consensus.Block, the same long-term tier) of blocks made before it."""
    for chain in chains:
        for model, time_field in ((HeightHistory, "judged_at"), (Block, "time")):
            below = first_height_since(model, chain, time_field, cutoff)
            if below is not None:
                prune_below(report, chain, [model], below, batch_size, dry_run)
