"""What the chain itself says about its validators (validators.status, read from its REST API),
turned into figures for the pages and into alerts: jail risk, jailed, tombstoned, left the active
set (resolved when it rejoins), and a large change of voting power.

Jail risk is the chain's own rule: of every `signed_blocks_window` blocks a validator may miss
`window - round(window x min_signed_per_window)`; the chain's `missed_blocks_counter` against that
allowance is the share shown and alerted on. ctop's own count of missed commit signatures over the
same window is shown beside it: a disagreement (ctop blind for a while, or a node that reports
wrong counters) is itself worth a look. The time to jail is projected from the recent miss rate
ctop measured and the chain's recent block time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from consensus.models import Chain
from validators.models import ChainRestStatus, ValidatorStatus
from validators.selectors import memberships_between

from .lifecycle import Clear, Finding, OpenAlerts
from .models import AlertKind, AlertSettings, Severity

Result = tuple[list[Finding], list[Clear]]

RATE_HEIGHTS = 100  # the "current" miss rate: over this many latest judged heights
RECENT_HEIGHTS = 600  # a set change younger than this is news (about an hour of 6 s blocks)
STALE_SECONDS = 3600  # a status read older than this neither opens nor resolves anything
FOLLOW_SECONDS = 7 * 86400  # a jailing or tombstoning ctop saw is alerted on for a week, then left to people
HYSTERESIS = 0.1  # jail risk resolves this far under its warning share


@dataclass(frozen=True)
class JailRisk:
    counter: int | None  # the chain's missed_blocks_counter (None: no signing info)
    allowance: int | None  # misses the window allows (None: no slashing params)
    window: int | None
    share: float | None  # counter / allowance
    ctop_missed: int | None  # ctop's count of missed commit signatures over the same window
    ctop_heights: int | None  # heights of that window ctop judged (fewer when it was not watching)
    seconds_to_jail: float | None  # at the recent miss rate; None when not known or it misses nothing lately
    recent_rate: int | None = None  # its misses in the latest RATE_HEIGHTS judged heights (None: not counted)


def status_note(chain: Chain) -> str:
    """Why a chain's validator status is missing or stale ("" when it is fine)."""
    rest = ChainRestStatus.objects.filter(chain=chain).first()
    if not chain.rest_url:
        return "No REST endpoint is configured for this chain (rest_url): status and jail risk need one."
    if rest is None:
        return "The chain's REST API has not been read yet."
    if rest.last_error:
        when = f" at {rest.last_error_at:%Y-%m-%d %H:%M} UTC" if rest.last_error_at else ""
        return f"The last read of the REST API failed{when}: {rest.last_error}"
    return ""


def _own_misses(chain_id: int, lo: int, hi: int, validator_ids: list[int]) -> tuple[dict[int, int], int]:
    """ctop's missed commit signatures per validator over heights lo..hi (its precommit in the
    height's last round missing), and how many of those heights ctop judged. Index walks: the
    verdicts' natural key (chain, height, ...) for the heights, the validator's own index for it."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT validator_id, count(*) FROM analysis_validatorverdict WHERE validator_id = ANY(%s)"
            " AND chain_id = %s AND height BETWEEN %s AND %s AND missed AND right(precommits, 1) = 'M'"
            " GROUP BY validator_id",
            [validator_ids, chain_id, lo, hi],
        )
        missed = dict(cur.fetchall())
        cur.execute(
            "SELECT count(*) FROM analysis_heightverdict WHERE chain_id = %s AND height BETWEEN %s AND %s"
            " AND NOT unknown",
            [chain_id, lo, hi],
        )
        return missed, cur.fetchone()[0]


def _block_seconds(chain_id: int, latest: int) -> float | None:
    """The chain's recent block time: from the first stored height of the last RATE_HEIGHTS to
    `latest` (two probes of the rounds' natural key)."""
    with connection.cursor() as cur:
        cur.execute(
            "(SELECT height, started_at FROM consensus_round WHERE chain_id = %s AND height >= %s AND round = 0"
            " ORDER BY height LIMIT 1) UNION ALL (SELECT height, started_at FROM consensus_round"
            " WHERE chain_id = %s AND height = %s AND round = 0)",
            [chain_id, latest - RATE_HEIGHTS, chain_id, latest],
        )
        rows = cur.fetchall()
    if len(rows) < 2 or rows[1][0] <= rows[0][0]:
        return None
    return (rows[1][1] - rows[0][1]).total_seconds() / (rows[1][0] - rows[0][0]) or None


def jail_risks(chain: Chain, validator_ids: list[int], latest_judged: int | None) -> dict[int, JailRisk]:
    """The jail-risk figures of these validators (those with a status read), for the pages."""
    rest = ChainRestStatus.objects.filter(chain=chain).first()
    statuses = {s.validator_id: s for s in ValidatorStatus.objects.filter(chain=chain, validator_id__in=validator_ids)}
    if not statuses:
        return {}
    allowance = rest.allowed_misses if rest else None
    window = rest.signed_blocks_window if rest else None
    own: dict[int, int] = {}
    judged = recent = None
    rate: dict[int, int] = {}
    block = None
    if latest_judged is not None and window:
        own, judged = _own_misses(chain.pk, latest_judged - window + 1, latest_judged, list(statuses))
        rate, recent = _own_misses(chain.pk, latest_judged - RATE_HEIGHTS + 1, latest_judged, list(statuses))
        block = _block_seconds(chain.pk, latest_judged)
    out = {}
    for vid, s in statuses.items():
        counter = s.missed_blocks_counter
        share = counter / allowance if counter is not None and allowance else None
        eta = None
        if counter is not None and allowance is not None and recent and block and rate.get(vid):
            per_height = rate[vid] / recent
            eta = max(0.0, (allowance + 1 - counter) / per_height * block)
        out[vid] = JailRisk(
            counter,
            allowance,
            window,
            share,
            own.get(vid, 0) if judged is not None else None,
            judged,
            eta,
            rate.get(vid, 0) if recent else None,
        )
    return out


def jail_shares(
    validator_ids: list[int] | None = None, *, chain_id: int | None = None, now: datetime | None = None
) -> dict[int, float]:
    """Each validator's share (0..1) of its chain's allowed misses used, where the chain's REST API
    said so: of these validators, or of every validator of `chain_id`; with `now`, only from status
    reads fresh at that moment (an alert decides nothing on a stale read). One query."""
    out: dict[int, float] = {}
    statuses = ValidatorStatus.objects.filter(missed_blocks_counter__isnull=False)
    if validator_ids is not None:
        statuses = statuses.filter(validator_id__in=validator_ids)
    if chain_id is not None:
        statuses = statuses.filter(chain_id=chain_id)
    for s in statuses.select_related("chain__rest_status"):
        rest = getattr(s.chain, "rest_status", None)
        allowance = rest.allowed_misses if rest else None
        if allowance and (now is None or _fresh(s.counters_read_at, now)):
            out[s.validator_id] = s.missed_blocks_counter / allowance
    return out


def _fresh(read_at: datetime | None, now: datetime) -> bool:
    return read_at is not None and (now - read_at).total_seconds() <= STALE_SECONDS


def _recent(since: datetime | None, now: datetime) -> bool:
    return since is not None and (now - since).total_seconds() <= FOLLOW_SECONDS


def status_alerts(chain: Chain, settings: AlertSettings, open_alerts: OpenAlerts, now: datetime) -> Result:
    """Jail risk, jailed and tombstoned, from the latest status read. A stale read decides nothing
    (the staking read for jailed, the slashing read for the counters: a slashing API down for days
    leaves old counters that must not keep an alert open). Jailed and tombstoned alert on what ctop
    saw happen, for FOLLOW_SECONDS: a validator jailed for years before ctop first read it, or
    abandoned since, is not a page. Resolving waits out the chain's cool-down, and jail risk resolves
    only 10 points under its warning share: a counter hovering at the line makes one alert, not one
    per read (a load-balanced REST API whose nodes disagree cannot make them flap either)."""
    rest = ChainRestStatus.objects.filter(chain=chain).first()
    allowance = rest.allowed_misses if rest else None
    cooldown = float(settings.cooldown_seconds)
    findings: list[Finding] = []
    clears: list[Clear] = []
    for s in ValidatorStatus.objects.filter(chain=chain):
        vid = s.validator_id
        if _fresh(s.read_at, now):
            if s.tombstoned and _recent(s.tombstoned_since, now):
                note = "tombstoned: slashed for double signing, for good"
                findings.append(Finding(AlertKind.TOMBSTONED, vid, Severity.CRITICAL, note))
            if s.jailed and _recent(s.jailed_since, now):
                until = f" until {s.jailed_until:%Y-%m-%d %H:%M} UTC" if s.jailed_until else ""
                note = f"jailed{until} (status {s.bond_status})"
                findings.append(Finding(AlertKind.JAILED, vid, Severity.CRITICAL, note))
            elif not s.jailed:
                clears.append(Clear(AlertKind.JAILED, vid, "unjailed", cooldown))
            if s.jailed or s.bond_status != "bonded":
                note = "jailed" if s.jailed else f"no longer bonded ({s.bond_status})"
                clears.append(Clear(AlertKind.JAIL_RISK, vid, note, cooldown))
        if s.jailed or s.bond_status != "bonded" or not _fresh(s.counters_read_at, now):
            continue  # only a bonded validator's counter rises; a stale counter decides nothing
        share = s.missed_blocks_counter / allowance if s.missed_blocks_counter is not None and allowance else None
        if share is None or settings.jail_risk_warning <= 0:
            continue
        if share >= settings.jail_risk_warning:
            critical = 0 < settings.critical_jail_risk <= share
            findings.append(
                Finding(
                    AlertKind.JAIL_RISK,
                    vid,
                    Severity.CRITICAL if critical else Severity.WARNING,
                    f"jail risk: {s.missed_blocks_counter} of {allowance} allowed misses ({share:.0%})"
                    f" in the chain's window of {rest.signed_blocks_window} blocks",
                    details={"counter": s.missed_blocks_counter, "allowance": allowance, "share": round(share, 4)},
                )
            )
        elif share < settings.jail_risk_warning - HYSTERESIS:
            clears.append(Clear(AlertKind.JAIL_RISK, vid, f"counter at {share:.0%}", cooldown))
    return findings, clears


def set_alerts(chain: Chain, settings: AlertSettings, open_alerts: OpenAlerts, latest: int | None) -> Result:
    """Left the active set (resolved when it rejoins), and voting power changed by more than
    `power_change_share` in one step, from the set history of the last RECENT_HEIGHTS heights."""
    if latest is None:
        return [], []
    rows = memberships_between(chain.pk, latest - RECENT_HEIGHTS - 1, latest)
    by_validator: dict[int, list[tuple[int, int | None, int]]] = {}
    for lower, upper, vid, power, _ in rows:
        by_validator.setdefault(vid, []).append((lower, upper, power))
    current = {vid for vid, spans in by_validator.items() if any(u is None or u > latest for _, u, _ in spans)}
    findings: list[Finding] = []
    clears: list[Clear] = []
    for vid, spans in by_validator.items():
        spans.sort()
        last_upper = spans[-1][1]
        if vid not in current and last_upper is not None and last_upper > latest - RECENT_HEIGHTS:
            note = f"left the active set at height {last_upper}"
            findings.append(Finding(AlertKind.LEFT_SET, vid, Severity.WARNING, note, last_upper))
        for (_, up_a, old), (lo_b, _, new) in itertools.pairwise(spans):
            if up_a != lo_b or lo_b <= latest - RECENT_HEIGHTS or old <= 0 or settings.power_change_share <= 0:
                continue
            change = (new - old) / old
            if abs(change) > settings.power_change_share:
                findings.append(
                    Finding(
                        AlertKind.POWER_CHANGED,
                        vid,
                        Severity.WARNING,
                        f"voting power {old:,} -> {new:,} ({change:+.0%}) at height {lo_b}",
                        lo_b,
                        {"old_power": old, "new_power": new},
                    )
                )
    for kind, vid in list(open_alerts):
        if kind == AlertKind.LEFT_SET and vid in current:
            first = min(lo for lo, u, _ in by_validator[vid] if u is None or u > latest)
            note = f"rejoined the active set at height {first}"
            clears.append(Clear(AlertKind.LEFT_SET, vid, note, float(settings.cooldown_seconds)))
        if kind == AlertKind.POWER_CHANGED and not any(
            f.kind == AlertKind.POWER_CHANGED and f.validator_id == vid for f in findings
        ):
            clears.append(Clear(AlertKind.POWER_CHANGED, vid, f"no change in the last {RECENT_HEIGHTS} heights"))
    return findings, clears
