from __future__ import annotations

from collections import Counter

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from common.text import redact_url
from consensus.models import Chain, ChainStatus, DeadLetter, FeedState, Step, Validator
from consensus.selectors import latest_heights, open_gap_counts

from .. import watchlist
from ..models import Severity
from ..rules import stale_after
from ..selectors import open_alert_counts


def feed(status: ChainStatus | None, now) -> tuple[str, bool, str]:
    """What the subscriber last said, as (label, ok, endpoint): an old report is shown as stale with
    its age, never as a live "connected"; a chain nobody reports on says so."""
    if status is None:
        return "no subscriber", False, ""
    endpoint = redact_url(status.endpoint) if "://" in status.endpoint else status.endpoint
    age = (now - status.updated_at).total_seconds()
    if age > stale_after(status):
        minutes = f"{int(age // 60)} min" if age >= 120 else f"{int(age)}s"
        return f"stale ({status.state} {minutes} ago)", False, endpoint
    return status.state, status.state == FeedState.CONNECTED, endpoint


@login_required
def overview(request):
    """Every chain: latest height, round and step, time since the height started, the endpoint ctop
    is connected to, open alerts by severity; then the team's watched validators (analysis.watchlist)."""
    now = timezone.now()
    statuses = {s.chain_id: s for s in ChainStatus.objects.all()}
    alerts = open_alert_counts()
    open_gaps = open_gap_counts()
    chains = list(Chain.objects.order_by("name"))
    # Every chain's newest round and its furthest step, in one round trip whatever the number of chains.
    latest = latest_heights([c.pk for c in chains])
    proposers = Validator.objects.in_bulk([r.proposer_id for r in latest.values() if r.proposer_id])
    rows = []
    for chain in chains:
        newest = latest.get(chain.pk)
        height, round_ = (newest.height, newest.round) if newest else (None, None)
        started, proposer_id, step = (
            (newest.round_started_at, newest.proposer_id, newest.step) if newest else (None, None, None)
        )
        counts = alerts.get(chain.pk, Counter())
        rows.append(
            {
                "chain": chain,
                "height": height,
                "round": round_,
                "proposer": proposers.get(proposer_id),
                "step": Step(step).label if step else "",
                "age": (now - started).total_seconds() if started else None,
                "feed": feed(statuses.get(chain.pk), now),
                "critical": counts[Severity.CRITICAL],
                "warning": counts[Severity.WARNING],
                "info": counts[Severity.INFO],
                "open_gaps": open_gaps[chain.pk],
            }
        )
    return render(
        request,
        "analysis/overview.html",
        {
            "rows": rows,
            "watched": watchlist.panel(),
            "watch_windows": (f"{watchlist.RECENT:,}", f"{watchlist.LONG:,}"),
            "dead_letters": DeadLetter.objects.count(),
            "now": now,
        },
    )
