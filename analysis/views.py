"""The team's pages. Plain functions; queries read through indexes (see the models)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from consensus.models import Chain, ChainStatus, DeadLetter, Gap, Round, Vote


@login_required
def overview(request):
    """Every chain: latest height and round, time since it started, what the subscriber says."""
    rows = []
    statuses = {s.chain_id: s for s in ChainStatus.objects.all()}
    now = timezone.now()
    for chain in Chain.objects.order_by("name"):
        # (chain, height, round) natural-key index, walked backwards: one row.
        latest = Round.objects.filter(chain=chain).order_by("-height", "-round").select_related("proposer").first()
        votes = Vote.objects.filter(chain=chain, height=latest.height, round=latest.round).count() if latest else 0
        rows.append(
            {
                "chain": chain,
                "latest": latest,
                "age": (now - latest.started_at).total_seconds() if latest else None,
                "votes": votes,
                "status": statuses.get(chain.pk),
                "open_gaps": Gap.objects.filter(chain=chain, backfilled_at__isnull=True).count(),
            }
        )
    return render(
        request,
        "analysis/overview.html",
        {"rows": rows, "dead_letters": DeadLetter.objects.count(), "now": now},
    )
