"""One validator: participation over time (an SVG bar chart drawn on the server), recent misses,
and its active-set history (joins, leaves, power changes). Participation and misses come from the
history tier (analysis.history): kept for years, after the per-validator verdicts are pruned."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from consensus.models import Validator
from validators.models import SetMembership

from .. import latency
from ..history import validator_heights
from ..models import Alert
from ..pagedata import participation

CHART_W, CHART_H, BUCKET, BUCKETS = 600, 120, 100, 100
LATENCY_HEIGHTS = 100


def chart(buckets: list[tuple[int, int, int]]) -> list[dict]:
    """Bars of the share of heights with a miss per bucket of 100 heights (height in pixels)."""
    if not buckets:
        return []
    width = CHART_W / len(buckets)
    bars = []
    for i, (start, judged, missed) in enumerate(buckets):
        share = missed / judged if judged else 0.0
        h = round(share * (CHART_H - 10), 1)
        bars.append(
            {
                "x": round(i * width, 1),
                "y": round(CHART_H - h, 1),
                "w": max(round(width - 1, 1), 1),
                "h": h,
                "title": f"heights {start}-{start + BUCKET - 1}: missed {missed} of {judged}",
                "bad": share > 0.05,
            }
        )
    return bars


@login_required
def validator_detail(request: HttpRequest, name: str, address: str) -> HttpResponse:
    validator = get_object_or_404(Validator.objects.select_related("chain"), chain__name=name, address=address.upper())
    # Its latest 10,000 judged heights, newest first: one walk of the history's key.
    heights = validator_heights(validator.chain_id, validator.pk, BUCKET * BUCKETS)
    buckets = participation(heights, BUCKET)[-BUCKETS:]
    # Newest misses first; heights ctop did not see, judged from the chain's commit, say so.
    misses = [(h.height, h.prevotes, h.precommits, h.from_commit) for h in heights if h.missed][:50]
    memberships = SetMembership.objects.filter(validator=validator).order_by("-heights")[:100]
    alerts = Alert.objects.filter(validator=validator).order_by("-opened_at")[:20]
    # Its vote latency and proposals over the chain's latest heights (the performance page's figures).
    speed = latency.chain_latency(validator.chain_id, LATENCY_HEIGHTS)
    proposals = latency.proposers(validator.chain_id, LATENCY_HEIGHTS * 10).get(validator.pk)
    judged = sum(b[1] for b in buckets)
    missed = sum(b[2] for b in buckets)
    return render(
        request,
        "analysis/validator_detail.html",
        {
            "validator": validator,
            "chain": validator.chain,
            "bars": chart(buckets),
            "chart_w": CHART_W,
            "chart_h": CHART_H,
            "first": buckets[0][0] if buckets else None,
            "last": buckets[-1][0] + BUCKET - 1 if buckets else None,
            "judged": judged,
            "missed": missed,
            "uptime": 100.0 * (judged - missed) / judged if judged else None,
            "misses": misses,
            "memberships": memberships,
            "alerts": alerts,
            "latency": speed.validators.get(validator.pk),
            "latency_heights": speed.heights,
            "chain_median_p95": speed.median("p95_ms"),
            "proposals": proposals,
        },
    )
