"""HTML for the pages' big tables (a row per validator, a cell per height), built in Python.

Django's template engine spends tens of microseconds per variable, filter and {% url %}: fine for
a page's frame, too slow for 150 validators x 100 heights. These functions build the same markup
with one URL prefix per table and escape every value that comes from outside (monikers come from
the chain's REST API), so pages stay well under 100 ms on big chains.
"""

from __future__ import annotations

from datetime import datetime

from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from consensus.models import Chain

from .pagedata import GridRow, HeightRound, Mark, Row


def _validator_base(chain: Chain) -> str:
    """The validator page URL up to the address (one reverse per table, not per row)."""
    return reverse("analysis:validator", args=[chain.name, "X" * 40])[:-41]


def _time(dt: datetime | None) -> str:
    return timezone.localtime(dt).strftime("%H:%M:%S.%f")[:-3] if dt else ""


def _mark_cell(mark: Mark) -> str:
    title = mark.kind + (f" · received {_time(mark.received_at)}" if mark.received_at else "")
    return f'<td class="m-{mark.kind}" title="{title}">{mark.symbol}</td>'


def live_rows(chain: Chain, rows: list[Row]) -> SafeString:
    base = _validator_base(chain)
    out = []
    for r in rows:
        v = r.validator
        tr = '<tr class="missing">' if r.missing else "<tr>"
        out.append(
            f'{tr}<td class="num dim">{r.position}</td>'
            f'<td><a href="{base}{escape(v.address)}/">{escape(v.short)}</a></td>'
            f'<td class="num">{r.share:.2f}%</td>{_mark_cell(r.prevote)}{_mark_cell(r.precommit)}</tr>'
        )
    return mark_safe("\n".join(out))  # noqa: S308 - every outside value above is escaped


def grid_rows(chain: Chain, rows: list[GridRow], from_commit: frozenset[int] = frozenset()) -> SafeString:
    """from_commit: heights ctop did not see, judged from the chain's canonical commit (shown
    hatched, and said so in the cell's title)."""
    base = _validator_base(chain)
    height_base = reverse("analysis:heights", args=[chain.name])
    out = []
    for row in rows:
        v = row.validator
        bad = " bad" if row.missed else ""
        cells = "".join(
            f'<td class="c-{mark or "_"}{" fc" if height in from_commit else ""}" title="{height}: '
            f'{mark or "not in the set"}{" (from the chain&#x27;s commit)" if height in from_commit else ""}">'
            f'<a href="{height_base}{height}/"></a></td>'
            for height, mark in row.cells
        )
        out.append(
            f'<tr><td class="name"><a href="{base}{escape(v.address)}/">{escape(v.short)}</a></td>{cells}'
            f'<td class="num{bad}">{row.missed}</td></tr>'
        )
    return mark_safe("\n".join(out))  # noqa: S308 - every outside value above is escaped


def height_rows(chain: Chain, r: HeightRound) -> SafeString:
    base = _validator_base(chain)
    out = []
    for validator, power, pv, pc in r.rows:
        cells = "".join(
            f'<td class="m-{m.kind}">{m.symbol} {m.kind}</td><td>{_time(m.received_at) or "-"}</td>'
            f'<td class="dim">{_time(m.timestamp)}</td>'
            for m in (pv, pc)
        )
        out.append(
            f'<tr><td><a href="{base}{escape(validator.address)}/">{escape(validator.short)}</a></td>'
            f'<td class="num">{power}</td>{cells}</tr>'
        )
    return mark_safe("\n".join(out))  # noqa: S308 - every outside value above is escaped
