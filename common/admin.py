"""Admin helpers for tables of tens of millions of rows."""

from __future__ import annotations

import json
from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection


class EstimatedCountPaginator(Paginator):
    """A paginator that never runs COUNT(*) over a huge table.

    It asks the planner for its row estimate of the page's query (EXPLAIN, no execution), which is
    instant on any table size; small results are counted exactly.
    """

    exact_below = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        query = self.object_list
        sql, params = query.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            raw = cursor.fetchone()[0]
        plan = raw if isinstance(raw, list) else json.loads(raw)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate < self.exact_below:
            return query.count()
        return estimate


class ReadOnlyEventAdmin(admin.ModelAdmin):
    """Events are facts read off the chain: viewable, never edited by hand."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the "N total" link would COUNT(*) the whole table
    list_per_page = 100

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def page_link(label: str = "page"):
    """An admin list column linking to the object's team page (its get_absolute_url)."""
    from django.contrib import admin
    from django.utils.html import format_html

    @admin.display(description=label)
    def link(self, obj) -> str:
        return format_html('<a href="{}">{} →</a>', obj.get_absolute_url(), label)

    return link
