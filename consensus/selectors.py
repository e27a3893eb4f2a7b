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
class RoundSeen:
    """A round of a chain's latest stored height."""

    height: int
    round: int
    started_at: datetime
    proposer_id: int | None
    step: int | None  # the furthest step seen in the round (None: no step stored)


def latest_heights(chain_ids: Iterable[int]) -> dict[int, list[RoundSeen]]:
    """Per chain, the rounds of the latest height ctop stored a round of, newest round first
    (chains with none are absent). Per chain, two walks back along the (chain, height, round)
    natural key and one along (chain, height, round, step); a LATERAL join does every chain in one
    round trip, so the cost is the same for 2 or 200 chains."""
    out: dict[int, list[RoundSeen]] = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.id, top.height, r.round, r.started_at, r.proposer_id,"
            " (SELECT max(step) FROM consensus_roundstep s WHERE s.chain_id = c.id AND s.height = top.height"
            "  AND s.round = r.round)"
            " FROM unnest(%s::smallint[]) c(id)"
            " CROSS JOIN LATERAL (SELECT height FROM consensus_round WHERE chain_id = c.id"
            "   ORDER BY height DESC LIMIT 1) top"
            " CROSS JOIN LATERAL (SELECT round, started_at, proposer_id FROM consensus_round"
            "   WHERE chain_id = c.id AND height = top.height) r"
            " ORDER BY c.id, r.round DESC",
            [list(chain_ids)],
        )
        for chain_id, height, round_, started, proposer_id, step in cur.fetchall():
            out.setdefault(chain_id, []).append(RoundSeen(height, round_, started, proposer_id, step))
    return out


def latest_stored_height(chain: Chain) -> tuple[int, float] | None:
    """ctop's own record of a chain: the latest height it stored a round of, and how many seconds
    ago that height's newest round started."""
    rounds = latest_heights([chain.pk]).get(chain.pk)
    if not rounds:
        return None
    return rounds[0].height, max((timezone.now() - rounds[0].started_at).total_seconds(), 0.0)


def open_gap_counts() -> Counter[int]:
    """Per chain id, the recorded gaps not backfilled (yet)."""
    return Counter(Gap.objects.filter(backfilled_at__isnull=True).values_list("chain_id", flat=True))
