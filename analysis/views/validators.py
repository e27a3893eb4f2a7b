"""One validator: participation over time (an SVG bar chart drawn on the server), recent misses,
and its active-set history (joins, leaves, power changes)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from consensus.models import Validator
from validators.models import SetMembership

from ..models import Alert, HeightVerdict, ValidatorVerdict
from ..pagedata import participation

CHART_W, CHART_H, BUCKET = 600, 120, 100


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
    buckets = participation(validator, BUCKET, 60)
    # The (validator, -height) verdict index: newest misses first.
    misses = list(
        ValidatorVerdict.objects.filter(validator=validator, missed=True)
        .order_by("-height")
        .values_list("height", "prevotes", "precommits")[:50]
    )
    # Heights ctop did not see, judged from the chain's commit: said so beside each.
    from_commit = set(
        HeightVerdict.objects.filter(
            chain_id=validator.chain_id, height__in=[h for h, _, _ in misses], from_commit=True
        ).values_list("height", flat=True)
    )
    misses = [(h, pv, pc, h in from_commit) for h, pv, pc in misses]
    memberships = SetMembership.objects.filter(validator=validator).order_by("-heights")[:100]
    alerts = Alert.objects.filter(validator=validator).order_by("-opened_at")[:20]
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
        },
    )
