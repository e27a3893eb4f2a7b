"""One validator: its charts over time (participation, vote arrival delay, proposer turns: SVG
drawn on the server, analysis.charts over analysis.timeline's bounded read), uptime, recent misses,
and its active-set history (joins, leaves, power changes). Everything per height comes from the
history tier (analysis.history): kept for years, after the per-validator verdicts are pruned.
Marking it watched ("ours") or not: a POST with CSRF, allowed by the analysis.add_watchedvalidator and
analysis.delete_watchedvalidator permissions (granted in the admin), not by staff status."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from consensus.models import Validator
from validators.models import SetMembership, StatusChange, ValidatorStatus

from .. import chainstatus, charts, latency, timeline
from ..history import validator_heights
from ..messages import human_duration
from ..models import Alert, AlertSettings, WatchedValidator

UPTIME_HEIGHTS = 10_000
LATENCY_HEIGHTS = 100


@login_required
def validator_detail(request: HttpRequest, name: str, address: str) -> HttpResponse:
    validator = get_object_or_404(Validator.objects.select_related("chain"), chain__name=name, address=address.upper())
    # Charts over time: a bounded, evenly sampled read of the range (analysis.timeline).
    chosen = request.GET.get("range", charts.DEFAULT_RANGE)
    if chosen not in charts.RANGES:
        chosen = charts.DEFAULT_RANGE
    now = timezone.now()
    seconds = charts.RANGES[chosen]
    since = now - timedelta(seconds=seconds) if seconds else None
    read = timeline.read(validator.chain_id, validator.pk, since)
    step, figures = None, []
    if read.points:
        # "all": the span of the heights read (by height: a height judged late, a backfill, may
        # not be the earliest in time).
        start = since if since is not None else min(p.at for p in read.points)
        end = now if since is not None else max(p.at for p in read.points)
        step, figures = charts.validator_charts(read.points, start, end, timezone.get_current_timezone(), read.stride)
    # Uptime and misses over its latest judged heights, newest first: one walk of the history's key.
    heights = validator_heights(validator.chain_id, validator.pk, UPTIME_HEIGHTS)
    # Newest misses first; heights ctop did not see, judged from the chain's commit, say so.
    misses = [(h.height, h.prevotes, h.precommits, h.from_commit) for h in heights if h.missed][:50]
    memberships = SetMembership.objects.filter(validator=validator).order_by("-heights")[:100]
    alerts = Alert.objects.filter(validator=validator).order_by("-opened_at")[:20]
    # Its vote latency and proposals over the chain's latest heights (the performance page's figures).
    speed = latency.chain_latency(validator.chain_id, LATENCY_HEIGHTS)
    proposals = latency.proposers(validator.chain_id, LATENCY_HEIGHTS * 10).get(validator.pk)
    judged = len(heights)
    missed = sum(h.missed for h in heights)
    # The chain's own word on it (REST: staking and slashing), with ctop's count beside the chain's.
    status = ValidatorStatus.objects.filter(validator=validator).first()
    latest_judged = heights[0].height if heights else None
    risk = chainstatus.jail_risks(validator.chain, [validator.pk], latest_judged).get(validator.pk)
    thresholds = AlertSettings.for_chain(validator.chain)
    return render(
        request,
        "analysis/validator_detail.html",
        {
            "validator": validator,
            "chain": validator.chain,
            "ranges": list(charts.RANGES),
            "range": chosen,
            "charts": figures,
            "timeline": read,
            "bucket": charts.step_label(step) if step else None,
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
            "status": status,
            "status_note": chainstatus.status_note(validator.chain),
            "status_changes": StatusChange.objects.filter(validator=validator).order_by("-seen_at")[:20],
            "risk": risk,
            "jail_warn": thresholds.jail_risk_warning,
            "jail_crit": thresholds.critical_jail_risk,
            "commission_pct": float(status.commission) * 100 if status and status.commission is not None else None,
            "time_to_jail": human_duration(timedelta(seconds=risk.seconds_to_jail))
            if risk and risk.seconds_to_jail is not None
            else None,
            "watch": WatchedValidator.objects.filter(validator=validator).select_related("added_by").first(),
        },
    )


@require_POST
@login_required
def validator_watch(request: HttpRequest, name: str, address: str) -> HttpResponse:
    """Watch (`watch=1`, with an optional `note`) or stop watching (`watch=0`) the validator."""
    validator = get_object_or_404(Validator, chain__name=name, address=address.upper())
    watch = request.POST.get("watch") == "1"
    needed = "analysis.add_watchedvalidator" if watch else "analysis.delete_watchedvalidator"
    if not request.user.has_perm(needed):
        raise PermissionDenied
    if watch:
        # get_or_create: a second click (or a second tab) keeps the first mark and its author.
        _, created = WatchedValidator.objects.get_or_create(
            validator=validator,
            defaults={"added_by": request.user, "note": request.POST.get("note", "").strip()[:200]},
        )
        messages.success(request, "Watched." if created else "Already watched.")
    else:
        WatchedValidator.objects.filter(validator=validator).delete()
        messages.success(request, "No longer watched.")
    return redirect("analysis:validator", name=name, address=validator.address)
