"""Per-chain pages: the live consensus view (the "top" in ctop), the recent-heights grid, and one
height in detail."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from consensus.ingest.publish import group_name
from consensus.models import Chain
from consensus.protocol.fields import INT64_MAX

from .. import pagedata, tables
from ..models import HeightVerdict

SORTS = {
    "power": lambda r: (-r.power, r.position),
    "name": lambda r: (r.validator.moniker or "~", r.validator.address),
    "prevote": lambda r: (r.prevote.kind != "absent", -r.power),
    "precommit": lambda r: (r.precommit.kind != "absent", -r.power),
}


def _int(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise Http404(f"{name} must be a number") from None
    if not 0 <= number <= INT64_MAX:
        raise Http404(f"{name} is out of range")  # a height past bigint can exist in no table
    return number


def _live_context(request: HttpRequest, chain: Chain) -> dict:
    height = _int(request.GET.get("height"), "height")
    round_ = _int(request.GET.get("round"), "round")
    snap = pagedata.round_snapshot(chain, height, round_)
    sort = request.GET.get("sort", "power")
    missing_only = request.GET.get("missing") == "1"
    rows = []
    if snap is not None:
        rows = sorted(snap.rows, key=SORTS.get(sort, SORTS["power"]))
        if missing_only:
            rows = [r for r in rows if r.missing]
    now = timezone.now()
    return {
        "chain": chain,
        "snap": snap,
        "rows_html": tables.live_rows(chain, rows),
        "elapsed": (now - snap.started_at).total_seconds() if snap and snap.started_at else None,
        "rows": rows,
        "sort": sort,
        "missing_only": missing_only,
        # Following the newest round only makes sense when no height or round was asked for.
        "following": height is None and round_ is None,
        "now": now,
        "two_thirds": pagedata.TWO_THIRDS,
    }


@login_required
def chain_live(request: HttpRequest, name: str) -> HttpResponse:
    chain = get_object_or_404(Chain, name=name)
    context = _live_context(request, chain)
    context["group"] = group_name(chain.name)
    return render(request, "analysis/chain_live.html", context)


@login_required
def chain_live_fragment(request: HttpRequest, name: str) -> HttpResponse:
    """The live view's body alone: what the page's script swaps in when told the chain moved."""
    chain = get_object_or_404(Chain, name=name)
    return render(request, "analysis/_live_round.html", _live_context(request, chain))


@login_required
def heights_grid(request: HttpRequest, name: str) -> HttpResponse:
    chain = get_object_or_404(Chain, name=name)
    count = min(_int(request.GET.get("count"), "count") or 100, 500)
    until = _int(request.GET.get("until"), "until")
    columns, rows = pagedata.heights_grid(chain, count, until)
    if request.GET.get("missing") == "1":
        rows = [r for r in rows if r.missed]
    return render(
        request,
        "analysis/heights_grid.html",
        {
            "chain": chain,
            "columns": columns,
            "rows": rows,
            "rows_html": tables.grid_rows(chain, rows, frozenset(c.height for c in columns if c.from_commit)),
            "count": count,
            "missing_only": request.GET.get("missing") == "1",
            "older": columns[0].height - 1 if columns else None,
        },
    )


@login_required
def height_detail(request: HttpRequest, name: str, height: int) -> HttpResponse:
    if height > INT64_MAX:
        raise Http404("height is out of range")
    chain = get_object_or_404(Chain, name=name)
    rounds = pagedata.height_detail(chain, height)
    for r in rounds:
        r.rows_html = tables.height_rows(chain, r)
    verdict = HeightVerdict.objects.filter(chain=chain, height=height).first()
    return render(
        request,
        "analysis/height_detail.html",
        {"chain": chain, "height": height, "rounds": rounds, "verdict": verdict},
    )
