"""How severe a missed-votes alert is while it lasts: it opens as a warning (the rule's own
threshold) and becomes critical once the validator has missed `critical_missed_heights` heights since
the alert opened, or has used `critical_jail_risk` of the misses its chain's slashing window allows,
whichever comes first. Each step up is one notification (analysis.lifecycle).

The decision is a pure function of its inputs, so a further trigger is one more argument. The jail
risk is such an input: analysis.alerts passes {validator id: share} from the chain's own counters
(analysis.chainstatus.jail_shares, fresh reads only) where the chain's REST API is read; an unknown
risk never escalates.
"""

from __future__ import annotations

from django.db import connection

from .models import UNKNOWN, AlertSettings, Severity


def missed_votes_severity(missed_heights: int, jail_risk_share: float | None, settings: AlertSettings) -> int:
    """The severity of a missed-votes alert whose validator has missed `missed_heights` heights since
    it opened, and has used `jail_risk_share` (0..1, None: unknown) of its slashing window's allowed
    misses. A threshold of 0 turns its trigger off."""
    if settings.critical_missed_heights and missed_heights >= settings.critical_missed_heights:
        return Severity.CRITICAL
    threshold = settings.critical_jail_risk
    if jail_risk_share is not None and threshold > 0 and jail_risk_share >= threshold:
        return Severity.CRITICAL
    return Severity.WARNING


def missed_since(chain_id: int, since: dict[int, int]) -> dict[int, tuple[int, int]]:
    """validator id -> (how many heights it missed at or above its own start height, the last of
    them), in one query. Heights ctop knew nothing about for it (all votes unknown) are not misses,
    as in the rule."""
    if not since:
        return {}
    vids, heights = zip(*since.items(), strict=True)
    with connection.cursor() as cur:
        # The (validator, -height) index serves each validator's range.
        cur.execute(
            "SELECT v.validator_id, count(*), max(v.height) FROM unnest(%s::int[], %s::bigint[]) s(vid, since)"
            " JOIN analysis_validatorverdict v ON v.chain_id = %s AND v.validator_id = s.vid AND v.height >= s.since"
            " WHERE v.missed AND translate(v.prevotes || v.precommits, %s, '') <> '' GROUP BY v.validator_id",
            [list(vids), list(heights), chain_id, UNKNOWN],
        )
        return {vid: (count, last) for vid, count, last in cur.fetchall()}
