from __future__ import annotations

from collections import Counter

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone

from consensus.models import Chain, ChainStatus, DeadLetter, Gap, RoundStep, Step

from ..models import Alert, Severity
from ..snapshots import latest_round


@login_required
def overview(request):
    """Every chain: latest height, round and step, time since the height started, the endpoint ctop
    is connected to, open alerts by severity."""
    now = timezone.now()
    statuses = {s.chain_id: s for s in ChainStatus.objects.all()}
    alerts: dict[int, Counter] = {}
    for chain_id, severity in Alert.objects.filter(is_open=True).values_list("chain_id", "severity"):
        alerts.setdefault(chain_id, Counter())[severity] += 1
    open_gaps = Counter(Gap.objects.filter(backfilled_at__isnull=True).values_list("chain_id", flat=True))
    rows = []
    for chain in Chain.objects.order_by("name"):
        latest = latest_round(chain)  # (chain, height, round) index walked backwards: one row
        step = None
        if latest:
            step = (
                RoundStep.objects.filter(chain=chain, height=latest.height, round=latest.round)
                .order_by("-step")
                .values_list("step", flat=True)
                .first()
            )
        counts = alerts.get(chain.pk, Counter())
        rows.append(
            {
                "chain": chain,
                "latest": latest,
                "step": Step(step).label if step else "",
                "age": (now - latest.started_at).total_seconds() if latest else None,
                "status": statuses.get(chain.pk),
                "critical": counts[Severity.CRITICAL],
                "warning": counts[Severity.WARNING],
                "info": counts[Severity.INFO],
                "open_gaps": open_gaps[chain.pk],
            }
        )
    return render(
        request,
        "analysis/overview.html",
        {"rows": rows, "dead_letters": DeadLetter.objects.count(), "now": now},
    )
