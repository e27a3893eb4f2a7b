from __future__ import annotations

from django.contrib import admin

from ctop_project.admin_utils import ReadOnlyEventAdmin, page_link

from .models import (
    Alert,
    AlertSettings,
    HeightVerdict,
    Notification,
    NotificationChannel,
    RoundVerdict,
    ValidatorVerdict,
)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = [
        "summary",
        "chain",
        "kind",
        "validator",
        "severity",
        "is_open",
        "opened_at",
        "updated_at",
        "resolved_at",
        "count",
        "page",
    ]
    list_filter = ["is_open", "kind", "severity", "chain"]
    page = page_link("details")
    search_fields = ["summary", "=validator__address", "validator__moniker"]
    list_select_related = ["chain", "validator"]
    readonly_fields = [
        "chain",
        "kind",
        "validator",
        "opened_at",
        "updated_at",
        "resolved_at",
        "first_height",
        "last_height",
        "count",
        "summary",
        "details",
    ]
    ordering = ["-updated_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False  # alerts are raised by the analyzer


@admin.register(AlertSettings)
class AlertSettingsAdmin(admin.ModelAdmin):
    list_display = [
        "chain",
        "consecutive_misses",
        "window_misses",
        "window",
        "resolve_after",
        "stall_after_seconds",
        "halt_after_seconds",
        "grace_seconds",
    ]


@admin.register(HeightVerdict)
class HeightVerdictAdmin(ReadOnlyEventAdmin):
    list_display = ["height", "chain", "rounds", "commit_round", "unknown", "missed_validators", "judged_at"]
    list_filter = ["chain", "unknown"]
    search_fields = ["=height"]
    ordering = ["-id"]


@admin.register(RoundVerdict)
class RoundVerdictAdmin(ReadOnlyEventAdmin):
    list_display = [
        "height",
        "round",
        "chain",
        "prevote_power",
        "prevote_nil_power",
        "precommit_power",
        "precommit_nil_power",
        "total_power",
    ]
    list_filter = ["chain"]
    search_fields = ["=height"]
    ordering = ["-id"]


@admin.register(ValidatorVerdict)
class ValidatorVerdictAdmin(ReadOnlyEventAdmin):
    list_display = ["height", "validator", "prevotes", "precommits", "missed", "power", "chain"]
    list_filter = ["chain", "missed"]
    search_fields = ["=height", "=validator__address", "validator__moniker"]
    list_select_related = ["validator", "chain"]
    ordering = ["-id"]


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "min_severity", "enabled", "last_error_at", "last_error"]
    list_filter = ["kind", "enabled"]
    filter_horizontal = ["chains"]
    readonly_fields = ["last_error", "last_error_at"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyEventAdmin):
    list_display = ["alert", "channel", "event", "status", "attempts", "sent_at", "error"]
    list_filter = ["status", "event", "channel"]
    list_select_related = ["alert", "channel"]
    ordering = ["-id"]
