"""Reads of the analysis record that more than one reader needs (the analyzer, ctop_status, the
pages), each one query for every chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.db import connection

from .models import Alert, Severity


def latest_verdicts(chain_ids: Iterable[int]) -> dict[int, tuple[int, datetime]]:
    """Per chain, the latest judged height and when it was judged (chains never judged are absent):
    a walk back along each chain's verdict natural key, every chain in one round trip."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT c.id, v.height, v.judged_at FROM unnest(%s::smallint[]) c(id)"
            " CROSS JOIN LATERAL (SELECT height, judged_at FROM analysis_heightverdict WHERE chain_id = c.id"
            "  ORDER BY height DESC LIMIT 1) v",
            [list(chain_ids)],
        )
        return {chain_id: (height, judged_at) for chain_id, height, judged_at in cur.fetchall()}


def open_alert_counts() -> dict[int, Counter[Severity]]:
    """Per chain id, its open alerts counted by severity."""
    counts: dict[int, Counter[Severity]] = {}
    for chain_id, severity in Alert.objects.filter(is_open=True).values_list("chain_id", "severity"):
        counts.setdefault(chain_id, Counter())[Severity(severity)] += 1
    return counts
