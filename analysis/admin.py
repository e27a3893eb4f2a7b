from __future__ import annotations

from django import forms
from django.contrib import admin

from common.admin import ReadOnlyEventAdmin, page_link
from common.text import redact_url

from .models import (
    Alert,
    AlertSettings,
    HeightVerdict,
    Notification,
    NotificationChannel,
    RoundVerdict,
    ValidatorScope,
    ValidatorVerdict,
    WatchedValidator,
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
        "critical_missed_heights",
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


def _is_secret_target(value: str) -> bool:
    return "://" in value  # webhook URLs (Slack, Discord, generic) carry their token in the path


class NotificationChannelForm(forms.ModelForm):
    """Secrets are write-only: the form never sends the bot token, routing key or webhook URL back to
    the browser. A blank field on change keeps the stored value."""

    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Telegram bot token or PagerDuty routing key. Write-only: leave blank to keep the current one.",
    )

    api_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text=NotificationChannel._meta.get_field("api_url").help_text,
    )

    class Meta:
        model = NotificationChannel
        fields = [
            "name",
            "kind",
            "target",
            "secret",
            "api_url",
            "chains",
            "min_severity",
            "validator_scope",
            "validators",
            "enabled",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        current = self.instance.target if self.instance.pk else ""
        if "target" in self.fields and _is_secret_target(current):
            self.initial["target"] = ""
            self.fields["target"].help_text = (
                f"Now {redact_url(current)} (write-only: leave blank to keep it). " + self.fields["target"].help_text
            )
        if "secret" in self.fields and self.instance.pk and self.instance.secret:
            self.fields["secret"].help_text = "A secret is set. " + self.fields["secret"].help_text

    def clean_target(self) -> str:
        value = self.cleaned_data.get("target", "")
        return value or (self.instance.target if self.instance.pk else "")

    def clean_secret(self) -> str:
        value = self.cleaned_data.get("secret", "")
        return value or (self.instance.secret if self.instance.pk else "")

    def clean(self) -> dict:
        data = super().clean()
        # "Chosen" with nobody chosen would take chain alerts only: say so rather than stay silent.
        if data.get("validator_scope") == ValidatorScope.CHOSEN and not data.get("validators"):
            self.add_error("validators", "Choose at least one validator, or widen the scope.")
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = NotificationChannelForm
    list_display = [
        "name",
        "kind",
        "target_shown",
        "min_severity",
        "validator_scope",
        "enabled",
        "last_error_at",
        "last_error",
    ]
    list_filter = ["kind", "enabled", "validator_scope"]
    filter_horizontal = ["chains"]
    autocomplete_fields = ["validators"]  # a chain may have hundreds: search, never one big <select>
    readonly_fields = ["last_error", "last_error_at"]

    @admin.display(description="target")
    def target_shown(self, obj: NotificationChannel) -> str:
        return redact_url(obj.target) if _is_secret_target(obj.target) else obj.target

    @admin.display(description="secret")
    def secret_shown(self, obj: NotificationChannel) -> str:
        return "set (hidden)" if obj.secret else "-"

    def get_fields(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # A view-only user sees that secrets exist, never what they are.
            return [
                "name",
                "kind",
                "target_shown",
                "secret_shown",
                "api_url",
                "chains",
                "min_severity",
                "validator_scope",
                "validators",
                "enabled",
            ]
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not self.has_change_permission(request, obj):
            fields += ["target_shown", "secret_shown"]
        return fields


@admin.register(Notification)
class NotificationAdmin(ReadOnlyEventAdmin):
    list_display = ["alert", "channel", "event", "severity", "status", "attempts", "sent_at", "error"]
    list_filter = ["status", "event", "channel"]
    list_select_related = ["alert", "channel"]
    ordering = ["-id"]


@admin.register(WatchedValidator)
class WatchedValidatorAdmin(admin.ModelAdmin):
    """The team's validators ("ours"), per chain: also marked from each validator's page."""

    list_display = ["validator", "address", "chain", "note", "added_by", "added_at", "page"]
    list_filter = ["validator__chain"]
    search_fields = ["=validator__address", "^validator__address", "validator__moniker", "note"]
    list_select_related = ["validator__chain", "added_by"]
    autocomplete_fields = ["validator"]
    readonly_fields = ["added_by", "added_at"]
    ordering = ["validator__chain__name", "validator__moniker", "validator__address"]

    @admin.display(description="address", ordering="validator__address")
    def address(self, obj: WatchedValidator) -> str:
        return obj.validator.address

    @admin.display(description="chain", ordering="validator__chain__name")
    def chain(self, obj: WatchedValidator) -> str:
        return obj.validator.chain.name

    page = page_link("participation")

    def save_model(self, request, obj: WatchedValidator, form, change: bool) -> None:
        if not change:
            obj.added_by = request.user
        super().save_model(request, obj, form, change)
