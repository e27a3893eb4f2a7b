"""Reads of the consensus record that other apps need, each one indexed query."""

from __future__ import annotations

from django.utils import timezone

from .models import Chain, Round


def latest_stored_height(chain: Chain) -> tuple[int, float] | None:
    """ctop's own record of a chain: the latest height it stored a round of, and how many seconds
    ago that round started (a walk back along the (chain, height, round) natural key)."""
    row = Round.objects.filter(chain=chain).order_by("-height", "-round").values_list("height", "started_at").first()
    if row is None:
        return None
    return row[0], max((timezone.now() - row[1]).total_seconds(), 0.0)
