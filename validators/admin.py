from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from common.admin import EstimatedCountPaginator, page_link
from consensus.models import Validator

from .models import SetIndexState, SetMembership


@admin.register(Validator)
class ValidatorAdmin(admin.ModelAdmin):
    list_display = ["address", "moniker", "chain", "pub_key_type", "first_seen_at", "page"]
    list_select_related = ["chain"]
    list_filter = ["chain", "pub_key_type"]
    search_fields = ["=address", "^address", "moniker", "operator_address"]
    readonly_fields = ["first_seen_at", "updated_at", "membership_link"]
    paginator = EstimatedCountPaginator
    page = page_link("participation")

    def has_delete_permission(self, request, obj=None) -> bool:
        # A validator's votes, verdicts and history refer to it: it goes with its chain, not alone.
        return False

    @admin.display(description="active-set history")
    def membership_link(self, obj: Validator) -> str:
        url = reverse("admin:validators_setmembership_changelist") + f"?validator__id__exact={obj.pk}"
        return format_html('<a href="{}">memberships of this validator</a>', url)


@admin.register(SetMembership)
class SetMembershipAdmin(admin.ModelAdmin):
    list_display = ["validator", "chain", "heights", "voting_power", "position"]
    list_filter = ["chain"]
    search_fields = ["=validator__address", "validator__moniker"]
    list_select_related = ["validator", "chain"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    # History is written by the indexer only; hand edits would break its invariants.
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(SetIndexState)
class SetIndexStateAdmin(admin.ModelAdmin):
    list_display = ["chain", "verified_height", "verified_at", "last_error_at", "last_error"]
    readonly_fields = ["chain", "verified_height", "verified_at", "last_error", "last_error_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False
