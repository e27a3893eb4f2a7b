"""Alerts: open and resolved, filterable; one alert with its heights and notification history; a
manual resolve for accounts with the analysis.resolve_alert permission (superusers; others are
granted it, e.g. `manage.py team add --can-resolve`), POST and CSRF-protected."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from consensus.models import Chain

from ..lifecycle import resolve
from ..models import Alert, AlertKind, Notification, Severity


@login_required
def alert_list(request: HttpRequest) -> HttpResponse:
    alerts = Alert.objects.select_related("chain", "validator").order_by("-is_open", "-updated_at")
    state = request.GET.get("state", "open")
    if state == "open":
        alerts = alerts.filter(is_open=True)
    elif state == "resolved":
        alerts = alerts.filter(is_open=False)
    chain = request.GET.get("chain", "")
    if chain:
        alerts = alerts.filter(chain__name=chain)
    kind = request.GET.get("kind", "")
    if kind in AlertKind.values:
        alerts = alerts.filter(kind=kind)
    severity = request.GET.get("severity", "")
    if severity.isdigit() and int(severity) in Severity.values:
        alerts = alerts.filter(severity__gte=int(severity))
    validator = request.GET.get("validator", "").strip()
    if validator:
        # Exact address (indexed) or a moniker fragment.
        alerts = alerts.filter(validator__address=validator.upper()) | alerts.filter(
            validator__moniker__icontains=validator
        )
    page = Paginator(alerts, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "analysis/alert_list.html",
        {
            "page": page,
            "state": state,
            "chain": chain,
            "kind": kind,
            "severity": severity,
            "validator": validator,
            "chains": Chain.objects.order_by("name").values_list("name", flat=True),
            "kinds": AlertKind.choices,
            "severities": Severity.choices,
        },
    )


@login_required
def alert_detail(request: HttpRequest, pk: int) -> HttpResponse:
    alert = get_object_or_404(Alert.objects.select_related("chain", "validator"), pk=pk)
    notifications = Notification.objects.filter(alert=alert).select_related("channel").order_by("id")
    heights = alert.details.get("heights") or ([alert.details["height"]] if "height" in alert.details else [])
    return render(
        request,
        "analysis/alert_detail.html",
        {"alert": alert, "notifications": notifications, "heights": sorted(heights)},
    )


@require_POST
@login_required
@permission_required("analysis.resolve_alert", raise_exception=True)
def alert_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    """Resolve by hand (e.g. a validator retired on purpose). The rule reopens it if it still holds."""
    alert = get_object_or_404(Alert, pk=pk, is_open=True)
    resolve(
        alert.chain,
        alert.kind,
        alert.validator_id,
        now=timezone.now(),
        note=f"resolved by {request.user.get_username()}",
    )
    messages.success(request, "Alert resolved.")
    return redirect("analysis:alert", pk=pk)
