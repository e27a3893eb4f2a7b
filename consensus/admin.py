from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.utils.html import format_html

from common.admin import ReadOnlyEventAdmin, page_link

from .models import Chain, CommitSignature, DeadLetter, Endpoint, Gap, Round, RoundStep


class EndpointInline(admin.TabularInline):
    model = Endpoint
    extra = 1
    fields = ["url", "priority", "enabled"]


@admin.register(Chain)
class ChainAdmin(admin.ModelAdmin):
    list_display = ["name", "chain_id", "enabled", "endpoint_count", "created_at", "live"]
    list_filter = ["enabled"]
    search_fields = ["name", "chain_id"]
    inlines = [EndpointInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    live = page_link("live view")

    @admin.display(description="endpoints")
    def endpoint_count(self, obj: Chain) -> int:
        return obj.endpoints.count()


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "chain", "priority", "enabled"]
    list_filter = ["chain", "enabled"]
    search_fields = ["url"]


class RoundZeroFilter(admin.SimpleListFilter):
    """Round 0 versus later rounds: a later round means the height needed more than one try."""

    title = "round"
    parameter_name = "round_kind"

    def lookups(self, request, model_admin):
        return [("0", "round 0"), ("later", "round ≥ 1")]

    def queryset(self, request, queryset):
        if self.value() == "0":
            return queryset.filter(round=0)
        if self.value() == "later":
            return queryset.filter(round__gte=1)
        return queryset


# Votes are not in the admin: Django 5.2's admin does not take a composite primary key, and the
# height page (/chains/<name>/heights/<h>/) shows every vote of a height with both its times.


@admin.register(Round)
class RoundAdmin(ReadOnlyEventAdmin):
    list_display = ["height", "round", "proposer", "started_at", "chain"]
    list_filter = ["chain", RoundZeroFilter]
    search_fields = ["=height", "=proposer__address", "proposer__moniker"]
    list_select_related = ["proposer", "chain"]
    ordering = ["-id"]


@admin.register(RoundStep)
class RoundStepAdmin(ReadOnlyEventAdmin):
    list_display = ["height", "round", "step", "seen_at", "chain"]
    list_filter = ["chain", "step", RoundZeroFilter]
    search_fields = ["=height"]
    list_select_related = ["chain"]
    ordering = ["-id"]


@admin.register(CommitSignature)
class CommitSignatureAdmin(ReadOnlyEventAdmin):
    list_display = ["height", "round", "validator_index", "flag", "validator", "timestamp", "chain"]
    list_filter = ["chain", "flag"]
    search_fields = ["=height", "=validator__address"]
    list_select_related = ["validator", "chain"]
    ordering = ["-id"]


@admin.register(Gap)
class GapAdmin(ReadOnlyEventAdmin):
    list_display = ["chain", "from_height", "to_height", "reason", "detected_at", "backfilled_at"]
    list_filter = ["chain"]
    date_hierarchy = "detected_at"
    ordering = ["-id"]


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyEventAdmin):
    list_display = ["created_at", "chain", "stream", "entry_id", "short_reason"]
    list_filter = ["chain"]
    search_fields = ["reason", "=entry_id"]
    readonly_fields = ["payload_pre"]
    ordering = ["-id"]

    @admin.display(description="reason")
    def short_reason(self, obj: DeadLetter) -> str:
        return obj.reason[:120]

    @admin.display(description="payload")
    def payload_pre(self, obj: DeadLetter) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", obj.payload)

    # Operators may delete dead letters once they have read them.
    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_superuser
