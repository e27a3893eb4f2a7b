"""Reads of the consensus record that other apps need, each one indexed query (or one round trip
for every chain)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.utils import timezone

from .models import Chain, Gap


@dataclass(frozen=True)
class LatestHeight:
    """A chain's latest stored height: its newest round, and when the height began."""

    height: int
    round: int  # the newest round seen at that height
    round_started_at: datetime
    started_at: datetime  # when the height began (its first round)
    proposer_id: int | None  # of the newest round
    step: int | None  # the furthest step seen in the newest round (None: no step stored)


def latest_heights(chain_ids: Iterable[int]) -> dict[int, LatestHeight]:
    """Per chain, its latest stored height (chains with none are absent). Four walks back along
    natural keys per chain, each reading one row however many rounds the height had (a node may
    report thousands), and a LATERAL join does every chain in one round trip: the cost is the
    same for 2 or 200 chains."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.id, top.height, newest.round, newest.started_at, first.started_at, newest.proposer_id,"
            " (SELECT step FROM consensus_roundstep s WHERE s.chain_id = c.id AND s.height = top.height"
            "   AND s.round = newest.round ORDER BY step DESC LIMIT 1)"
            " FROM unnest(%s::smallint[]) c(id)"
            " CROSS JOIN LATERAL (SELECT height FROM consensus_round WHERE chain_id = c.id"
            "   ORDER BY height DESC LIMIT 1) top"
            " CROSS JOIN LATERAL (SELECT round, started_at, proposer_id FROM consensus_round"
            "   WHERE chain_id = c.id AND height = top.height ORDER BY round DESC LIMIT 1) newest"
            " CROSS JOIN LATERAL (SELECT started_at FROM consensus_round"
            "   WHERE chain_id = c.id AND height = top.height ORDER BY round LIMIT 1) first",
            [list(chain_ids)],
        )
        return {row[0]: LatestHeight(*row[1:]) for row in cur.fetchall()}


def latest_stored_height(chain: Chain) -> tuple[int, float] | None:
    """ctop's own record of a chain: the latest height it stored a round of, and how many seconds
    ago that height's newest round started."""
    latest = latest_heights([chain.pk]).get(chain.pk)
    if latest is None:
        return None
    return latest.height, max((timezone.now() - latest.round_started_at).total_seconds(), 0.0)


def open_gap_counts() -> Counter[int]:
    """Per chain id, the recorded gaps not backfilled (yet)."""
    return Counter(Gap.objects.filter(backfilled_at__isnull=True).values_list("chain_id", flat=True))
