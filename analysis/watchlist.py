"""The overview's "my validators" panel: every watched validator across chains, with its latest
verdicts, its participation over its latest 100 and 10,000 judged heights, and its open alerts.

Read in a constant number of queries whatever the number of watched validators or heights: the
watch list, one SQL statement over the history tier for all of them (about 14 ms a watched validator
of a 150-validator chain), and the open alerts. In the history statement
each validator gets a LATERAL walk back along its chain's (chain, height) key from its last
membership (as history.validator_heights, whose figures the validator page shows: the panel agrees
with it), at most LONG rows, and only aggregates leave the database: counts, and its letters at the
latest CELLS heights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import Count, Max

from consensus.models import Chain, Validator

from . import chainstatus
from .history import CODES, LETTERS
from .models import MAX_VERDICT_ROUNDS, MISSED, Alert, AlertSettings, Severity, WatchedValidator
from .pagedata import _cell

RECENT = 100  # heights: "how is it doing now"
LONG = 10_000  # heights: the validator page's uptime window
CELLS = 20  # latest verdicts shown as cells

# Per watched validator (w.vid on chain w.chain_id): the voter sets holding it, with its position in
# each and each set's size (s), and the height its last membership ended (t: none recorded, or one
# still open, is the chain's top); then its latest LONG heights newest first, numbered: a backward
# scan of the (chain, height) key, already in order (no sort, and no row carries a set's id array).
# A height is missed when any kept round has M in the prevote (high nibble) or precommit (low
# nibble) of its byte; one-round heights, nearly all of them, are one get_byte. Rounds are counted
# over a constant series (at most MAX_VERDICT_ROUNDS are kept) so the planner costs them right and
# does not JIT-compile the statement (half a second of compiling for a 100 ms read).
PANEL = f"""
SELECT w.vid, p.judged_recent, p.missed_recent, p.judged, p.missed, p.heights, p.letters, p.from_commit
FROM unnest(%(vids)s::int[], %(chains)s::int[]) AS w(vid, chain_id)
CROSS JOIN LATERAL (
  SELECT array_agg(id ORDER BY id) AS ids, array_agg(array_position(validators, w.vid) - 1 ORDER BY id) AS pos,
         array_agg(cardinality(validators) ORDER BY id) AS n
  FROM analysis_voterset WHERE chain_id = w.chain_id AND validators @> ARRAY[w.vid]
) AS s
CROSS JOIN LATERAL (
  SELECT CASE WHEN count(*) = 0 OR bool_or(upper_inf(m.heights)) THEN 9223372036854775807
              ELSE max(upper(m.heights)) END AS top
  FROM validators_setmembership m WHERE m.validator_id = w.vid
) AS t
CROSS JOIN LATERAL (
  SELECT count(*) FILTER (WHERE r.rn <= %(recent)s) AS judged_recent,
         count(*) FILTER (WHERE r.rn <= %(recent)s AND r.missed) AS missed_recent,
         count(*) AS judged,
         count(*) FILTER (WHERE r.missed) AS missed,
         array_agg(r.height ORDER BY r.height) FILTER (WHERE r.rn <= %(cells)s) AS heights,
         array_agg(r.mine ORDER BY r.height) FILTER (WHERE r.rn <= %(cells)s) AS letters,
         array_agg(r.from_commit ORDER BY r.height) FILTER (WHERE r.rn <= %(cells)s) AS from_commit
  FROM (
    SELECT k.height, k.rn, k.from_commit,
      CASE WHEN length(k.letters) = k.n
        THEN (get_byte(k.letters, k.pos) >> 4) = %(missed)s OR (get_byte(k.letters, k.pos) & 15) = %(missed)s
        ELSE EXISTS (
          SELECT 1 FROM generate_series(0, {MAX_VERDICT_ROUNDS - 1}) AS g(i)
          WHERE g.i * k.n < length(k.letters) AND ((get_byte(k.letters, g.i * k.n + k.pos) >> 4) = %(missed)s
             OR (get_byte(k.letters, g.i * k.n + k.pos) & 15) = %(missed)s))
      END AS missed,
      CASE WHEN k.rn <= %(cells)s THEN (
        SELECT string_agg(substring(k.letters FROM g.i * k.n + k.pos + 1 FOR 1), ''::bytea ORDER BY g.i)
        FROM generate_series(0, {MAX_VERDICT_ROUNDS - 1}) AS g(i) WHERE g.i * k.n < length(k.letters))
      END AS mine
    FROM (
      SELECT h.height, h.letters, h.from_commit, s.pos[array_position(s.ids, h.voters_id)] AS pos,
             s.n[array_position(s.ids, h.voters_id)] AS n, row_number() OVER (ORDER BY h.height DESC) AS rn
      FROM (
        SELECT height, letters, from_commit, voters_id FROM analysis_heighthistory
        WHERE chain_id = w.chain_id AND voters_id = ANY(s.ids) AND height < t.top
        ORDER BY height DESC LIMIT %(long)s
      ) AS h
    ) AS k
  ) AS r
) AS p
"""  # noqa: S608 - a constant of ours, no input


@dataclass
class WatchedRow:
    """One watched validator as the panel shows it."""

    watch: WatchedValidator
    cells: list[tuple[int, str, bool]] = field(default_factory=list)  # (height, letter, from commit), oldest first
    judged_recent: int = 0  # of its latest RECENT judged heights, how many there were...
    missed_recent: int = 0  # ...and how many had a missed vote
    judged: int = 0  # the same over its latest LONG judged heights
    missed: int = 0
    open_alerts: int = 0
    worst: Severity | None = None  # the most severe of its open alerts
    # The chain's missed-blocks counter against its allowance, in percent (analysis.chainstatus);
    # None where the chain's REST API gave no slashing data: shown as "—", never guessed.
    jail_risk: float | None = None
    jail_class: str = "dim"  # ok / warn / bad against the chain's jail-risk thresholds

    @property
    def validator(self) -> Validator:
        return self.watch.validator

    @property
    def chain(self) -> Chain:
        return self.watch.validator.chain

    @property
    def recent(self) -> float | None:
        """Percent of its latest RECENT judged heights without a missed vote (None: none judged)."""
        return 100.0 * (self.judged_recent - self.missed_recent) / self.judged_recent if self.judged_recent else None

    @property
    def long(self) -> float | None:
        return 100.0 * (self.judged - self.missed) / self.judged if self.judged else None

    @property
    def worst_class(self) -> str:
        return {Severity.CRITICAL: "bad", Severity.WARNING: "warn"}.get(self.worst, "")


def panel() -> list[WatchedRow]:
    """Every watched validator, by chain then name, with its figures."""
    watches = list(
        WatchedValidator.objects.select_related("validator__chain").order_by(
            "validator__chain__name", "validator__moniker", "validator__address"
        )
    )
    if not watches:
        return []
    rows = {w.validator_id: WatchedRow(w) for w in watches}
    with transaction.atomic(), connection.cursor() as cur:
        # Its estimate (10,000 rows a validator, a sub-select each) crosses jit_above_cost; compiling
        # would cost a third of the read (measured: 43 of 130 ms for 10 validators). As views.metrics.
        cur.execute("SET LOCAL jit = off")
        cur.execute(
            PANEL,
            {
                "vids": [w.validator_id for w in watches],
                "chains": [w.validator.chain_id for w in watches],
                "recent": RECENT,
                "long": LONG,
                "cells": CELLS,
                "missed": CODES[MISSED],
            },
        )
        for vid, judged_recent, missed_recent, judged, missed, heights, letters, from_commit in cur.fetchall():
            row = rows[vid]
            row.judged_recent, row.missed_recent, row.judged, row.missed = judged_recent, missed_recent, judged, missed
            row.cells = [
                (height, _cell(*_letters(bytes(mine or b""))), fc)
                for height, mine, fc in zip(heights or [], letters or [], from_commit or [], strict=True)
            ]
    for vid, count, worst in (
        Alert.objects.filter(is_open=True, validator_id__in=list(rows))
        .values("validator_id")
        .annotate(count=Count("id"), worst=Max("severity"))
        .values_list("validator_id", "count", "worst")
    ):
        rows[vid].open_alerts, rows[vid].worst = count, Severity(worst)
    shares = chainstatus.jail_shares(list(rows))
    if shares:
        # Coloured by each chain's own thresholds (AlertSettings; defaults where a chain has none).
        chain_ids = {w.validator.chain_id for w in watches}
        settings = {s.chain_id: s for s in AlertSettings.objects.filter(chain_id__in=chain_ids)}
        for vid, share in shares.items():
            row = rows[vid]
            t = settings.get(row.validator.chain_id) or AlertSettings()
            row.jail_risk = 100 * share
            row.jail_class = (
                "bad" if 0 < t.critical_jail_risk <= share else "warn" if 0 < t.jail_risk_warning <= share else "ok"
            )
    return list(rows.values())


def _letters(mine: bytes) -> tuple[str, str]:
    """A validator's bytes of one height (one a round) as its (prevote letters, precommit letters)."""
    return (
        "".join(LETTERS.get(b >> 4, "") for b in mine),
        "".join(LETTERS.get(b & 0x0F, "") for b in mine),
    )
