"""A chain's performance page: the slowest validators (arrival delays and quorum margin over the
latest heights), the proposers' record (with their blocks' transactions, analysis.blocks), and a
latency heatmap (validators x recent heights), from the history tier (analysis.latency), measured
at the watched node."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.html import format_html_join

from common.text import redact_url
from consensus.models import Chain, Endpoint, Validator

from .. import blocks, latency
from ..models import AlertSettings

WINDOWS = (100, 1_000, 10_000)
HEATMAP_HEIGHTS = 60
SKEW_HEIGHTS = 1_000


def _shade(units: int) -> str:
    """A heatmap cell's class by delay: <50 ms, <200, <500, <1000, slower."""
    ms = units * latency.UNIT_MS
    return next((f"d{i}" for i, bound in enumerate((50, 200, 500, 1000)) if ms < bound), "d4")


def heatmap(chain_id: int, heights: int, names: dict[int, str]) -> tuple[list[int], str]:
    """Rows of cells (one per height, oldest first): each validator's first vote of the commit round,
    coloured by its arrival delay; returns the heights and the rows' HTML."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT h.height, v.validators, h.delays, h.round_info FROM analysis_heighthistory h"
            " JOIN analysis_voterset v ON v.id = h.voters_id WHERE h.chain_id = %s AND h.delays IS NOT NULL"
            " ORDER BY h.height DESC LIMIT %s",
            [chain_id, heights],
        )
        rows = cur.fetchall()[::-1]
    cells: dict[int, list[tuple[int, int | None]]] = {}
    for height, voters, packed, info in rows:
        values = latency.unpack_delays(bytes(packed))
        rounds = latency.unpack_rounds(bytes(info))
        k = next((i for i, r in enumerate(rounds) if r.flags & latency.COMMITTED), len(rounds) - 1)
        n = len(voters)
        for i, vid in enumerate(voters):
            pv, pc = values[(k * n + i) * 2], values[(k * n + i) * 2 + 1]
            seen = [d for d in (pv, pc) if d != latency.NO_DELAY]
            cells.setdefault(vid, []).append((height, min(seen) if seen else None))
    html = format_html_join(
        "\n",
        "<tr><th>{}</th>{}</tr>",
        (
            (
                names.get(vid, str(vid)),
                format_html_join(
                    "",
                    '<td class="{}" title="{}"></td>',
                    (
                        (_shade(d), f"height {h}: {d * latency.UNIT_MS} ms")
                        if d is not None
                        else ("none", f"height {h}: no vote seen")
                        for h, d in row
                    ),
                ),
            )
            for vid, row in sorted(cells.items(), key=lambda kv: names.get(kv[0], ""))
        ),
    )
    return [r[0] for r in rows], html


@login_required
def chain_performance(request: HttpRequest, name: str) -> HttpResponse:
    chain = get_object_or_404(Chain, name=name)
    try:
        window = int(request.GET.get("window", WINDOWS[0]))
    except ValueError:
        window = WINDOWS[0]
    window = window if window in WINDOWS else WINDOWS[0]
    stats = latency.chain_latency(chain.pk, window)
    validators = {v.pk: v for v in Validator.objects.filter(chain=chain)}
    names = {vid: v.moniker or v.short for vid, v in validators.items()}
    slowest = sorted(stats.validators.values(), key=lambda s: (-s.p95_ms, -s.after_quorum))
    records = sorted(latency.proposers(chain.pk, window).values(), key=lambda r: (-(r.turns - r.proposed), -r.lost))
    chain_blocks = blocks.chain_blocks(chain.pk, window)
    # Clock skew from the raw votes (kept days): over at most the latest 1,000 heights.
    skews = latency.clock_skews(chain.pk, min(window, SKEW_HEIGHTS))
    settings = AlertSettings.for_chain(chain)
    median_p95 = stats.median("p95_ms")
    bound = max(settings.slow_min_ms, settings.slow_factor * median_p95) if median_p95 is not None else None
    endpoint = Endpoint.objects.filter(pk=stats.vantage).first() if stats.vantage else None
    heights, heat = heatmap(chain.pk, HEATMAP_HEIGHTS, names)
    return render(
        request,
        "analysis/chain_performance.html",
        {
            "chain": chain,
            "window": window,
            "windows": WINDOWS,
            "stats": stats,
            "vantage": redact_url(endpoint.url) if endpoint else None,
            "slowest": [(validators.get(s.validator_id), s, skews.get(s.validator_id)) for s in slowest],
            "median_p95": median_p95,
            "bound": bound,
            "proposers": [
                (validators.get(r.validator_id), r, chain_blocks.by_proposer.get(r.validator_id)) for r in records
            ],
            "blocks": chain_blocks,
            "settings": settings,
            "heat_heights": heights,
            "heat_html": heat,
        },
    )
