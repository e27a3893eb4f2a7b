from __future__ import annotations

from collections import Counter

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.shortcuts import render
from django.utils import timezone

from common.text import redact_url
from consensus.models import Chain, ChainStatus, DeadLetter, Gap, Step
from validators.models import Validator

from ..models import Alert, Severity
from ..rules import stale_after


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
    return status.state, status.state == "connected", endpoint


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
    # Every chain's newest round and its latest step in one round trip: a LATERAL walk back along
    # each chain's (chain, height, round) index, so the page costs the same few queries for 2 or
    # 200 chains.
    latest: dict[int, tuple] = {}
    with connection.cursor() as cur:
        cur.execute(
            "SELECT r.chain_id, r.height, r.round, r.started_at, r.proposer_id,"
            " (SELECT max(step) FROM consensus_roundstep s WHERE s.chain_id = r.chain_id AND s.height = r.height"
            "  AND s.round = r.round)"
            " FROM consensus_chain c CROSS JOIN LATERAL (SELECT chain_id, height, round, started_at, proposer_id"
            "  FROM consensus_round WHERE chain_id = c.id ORDER BY height DESC, round DESC LIMIT 1) r"
        )
        for chain_id, height, round_, started, proposer_id, step in cur.fetchall():
            latest[chain_id] = (height, round_, started, proposer_id, step)
    proposers = Validator.objects.in_bulk([row[3] for row in latest.values() if row[3]])
    rows = []
    for chain in Chain.objects.order_by("name"):
        height, round_, started, proposer_id, step = latest.get(chain.pk, (None, None, None, None, None))
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
        {"rows": rows, "dead_letters": DeadLetter.objects.count(), "now": now},
    )
