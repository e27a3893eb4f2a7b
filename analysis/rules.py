"""The alert rules. Each reads what the tick loaded about a chain (and a query or two of its own)
and returns findings (conditions that hold) and clears (conditions known not to hold); the
lifecycle (analysis.lifecycle) turns them into alerts and notifications.

Time-based rules (stalled, live halt risk) count only time during which ctop was watching: the
subscriber connected, its reports fresh, and the stored record caught up with what it saw. Silence
while ctop itself was down, blind or catching up is a monitoring gap, never a stall or a halt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from common.text import one_line
from consensus.models import Chain, ChainStatus, FeedState, Vote, VoteType
from consensus.selectors import LatestHeight
from validators.selectors import latest_known_set

from .escalation import missed_since, missed_votes_severity
from .lifecycle import Clear, Finding, OpenAlerts
from .models import UNKNOWN, Alert, AlertKind, AlertSettings, RoundVerdict, Severity

Result = tuple[list[Finding], list[Clear]]

MIN_STALE_SECONDS = 30.0  # a report is stale after max(this, 4 subscriber intervals)


@dataclass(frozen=True)
class Watch:
    """Whether ctop is watching a chain right now, and since when (or why not)."""

    watching: bool
    since: datetime | None  # watching: since when; blind: since when it has been blind
    reason: str = ""  # ctop's own words: they may go into a summary
    detail: str = ""  # what the endpoint said (remote text): kept in the alert's details only


def stale_after(status: ChainStatus) -> float:
    return max(MIN_STALE_SECONDS, 4 * (status.interval or 10.0))


def watch(chain: Chain, status: ChainStatus | None, now: datetime, stored_height: int | None) -> Watch:
    if status is None:
        return Watch(False, chain.created_at, "no subscriber has reported on this chain")
    age = (now - status.updated_at).total_seconds()
    if age > stale_after(status):
        return Watch(
            False,
            status.updated_at + timedelta(seconds=status.interval or 10.0),
            f"the subscriber's last report is {int(age)}s old (is subscribe_events running?)",
        )
    if status.state != FeedState.CONNECTED:
        return Watch(False, status.since or status.updated_at, f"the subscriber reports {status.state}", status.reason)
    if status.height is not None and stored_height is not None and status.height > stored_height + 2:
        # The subscriber has seen heights that are not stored yet (stream_events behind, or a
        # PostgreSQL outage draining): the stored record is old, not the chain.
        return Watch(False, None, f"catching up: seen {status.height}, stored {stored_height}")
    return Watch(True, status.since or status.updated_at)


def monitoring(
    chain: Chain, settings: AlertSettings, now: datetime, w: Watch, observer_since: datetime | None = None
) -> Result:
    """ctop blind for `blind_after_seconds`. Blindness is counted from when this analyzer started at
    the earliest: after a restart of ctop the subscriber gets its moment to report before anyone is
    paged about the time ctop was off (which its operators know of)."""
    if w.watching:
        return [], [Clear(AlertKind.MONITORING_GAP, None, "watching again", settings.cooldown_seconds)]
    since = max(w.since, observer_since) if w.since and observer_since else w.since
    if since is None or (now - since).total_seconds() < settings.blind_after_seconds:
        return [], []  # not yet long enough to call it (a reconnect takes a moment)
    # The endpoint's own words stay in the details: a summary reaches chat messages, where links
    # and markup in remote text would render.
    return [
        Finding(
            AlertKind.MONITORING_GAP,
            None,
            Severity.CRITICAL,
            f"ctop is blind on {chain.name} for {int((now - w.since).total_seconds())}s: {w.reason}",
            details={"reason": w.reason, "detail": one_line(w.detail, 500), "since": w.since.isoformat()},
        )
    ], []


def stalled(chain: Chain, settings: AlertSettings, now: datetime, latest: LatestHeight | None, w: Watch) -> Result:
    if latest is None or not w.watching or w.since is None:
        return [], []  # unknown while ctop is not watching: the monitoring gap says so
    height = latest.height
    started = max(latest.started_at, w.since)  # the height began with its first round; ctop watched since
    age = (now - started).total_seconds()
    if age > settings.stall_after_seconds:
        return [
            Finding(
                AlertKind.STALLED,
                None,
                Severity.CRITICAL,
                f"no new height for {int(age)}s (stuck at {height})",
                height,
                {"height": height},
            )
        ], []
    return [], [Clear(AlertKind.STALLED, None, f"height {height} started", settings.cooldown_seconds)]


def live_halt_risk(
    chain: Chain, settings: AlertSettings, now: datetime, latest: LatestHeight | None, w: Watch
) -> tuple[int, int, str] | None:
    """The height in progress: its latest round has lacked +2/3 of the power prevoting, or
    precommitting, for longer than `halt_after_seconds` of watched time. Returns (height, round,
    summary) or None."""
    if latest is None or not w.watching or w.since is None:
        return None
    height, round_, started = latest.height, latest.round, latest.round_started_at
    waited = (now - max(started, w.since)).total_seconds()
    if waited <= settings.halt_after_seconds:
        return None
    members = {m.validator_id: m.voting_power for m in latest_known_set(chain.pk, height)[0]}
    total = sum(members.values())
    if not total:
        return None
    voters: dict[int, set[int]] = {VoteType.PREVOTE: set(), VoteType.PRECOMMIT: set()}
    for vid, kind in Vote.objects.filter(chain=chain, height=height, round=round_).values_list("validator_id", "type"):
        voters[kind].add(vid)
    if not voters[VoteType.PREVOTE]:
        # Nobody prevoted yet: the round is waiting for a proposal (a chain that makes blocks only
        # with transactions waits like this for minutes), not failing a vote. A chain that stops
        # entirely is the stalled rule's case.
        return None
    # A round stalls at either step: without +2/3 prevoting nobody may precommit, and with +2/3
    # prevoting but not +2/3 precommitting (power lost between the two steps) the round neither
    # commits nor times out into the next one.
    for kind, verb in ((VoteType.PREVOTE, "prevoted"), (VoteType.PRECOMMIT, "precommitted")):
        voted = sum(members.get(v, 0) for v in voters[kind])
        if voted * 3 <= total * 2:
            return (
                height,
                round_,
                f"halt risk at height {height} round {round_}: only {100 * voted // total}% of the power {verb}"
                f" in {int(waited)}s",
            )
    return None


def halt_risk(chain: Chain, settings: AlertSettings, now: datetime, latest: LatestHeight | None, w: Watch) -> Result:
    """More than 1/3 of the power missing in a round of the latest judged heights, rounds climbing at
    one height (3 or more), or the height in progress stuck without +2/3 prevoting or precommitting."""
    # The latest 30 round verdicts (one walk back along the natural key), minus heights ctop did not
    # fully see: power "missing" there says nothing about the chain.
    recent = list(
        RoundVerdict.objects.raw(
            "SELECT rv.* FROM (SELECT * FROM analysis_roundverdict WHERE chain_id = %s"
            " ORDER BY height DESC, round DESC LIMIT 30) rv JOIN analysis_heightverdict hv"
            " ON hv.chain_id = rv.chain_id AND hv.height = rv.height WHERE NOT hv.unknown"
            " ORDER BY rv.height DESC, rv.round DESC",
            [chain.pk],
        )
    )
    risky = []
    newest_judged = recent[0].height if recent else 0
    for rv in recent:
        if rv.height > newest_judged - settings.resolve_after and (
            rv.missing_prevote_power * 3 > rv.total_power
            or rv.missing_precommit_power * 3 > rv.total_power
            or rv.round >= 2
        ):
            risky.append(rv)
    found = live_halt_risk(chain, settings, now, latest, w)
    live = found is not None
    if found is None and risky and risky[0].height > newest_judged - 3:
        worst = risky[0]
        missing = 100 * worst.missing_precommit_power // max(worst.total_power, 1)
        found = (
            worst.height,
            worst.round,
            f"halt risk at height {worst.height} round {worst.round}: {missing}% of the power did not precommit",
        )
    if found is not None:
        height, round_, summary = found
        details = {"height": height, "round": round_, "live": live}
        return [Finding(AlertKind.HALT_RISK, None, Severity.CRITICAL, summary, height, details)], []
    if recent and not risky:
        return [], [Clear(AlertKind.HALT_RISK, None, f"{settings.resolve_after} healthy heights")]
    return [], []


def missed_votes(
    chain: Chain,
    settings: AlertSettings,
    open_alerts: OpenAlerts,
    latest: int | None,
    jail_risk: Mapping[int, float] | None = None,
) -> Result:
    """A validator missed votes in `consecutive_misses` heights in a row, or in `window_misses` of the
    last `window` heights it was judged on. Resolves after `resolve_after` fully signed heights in a
    row. Heights ctop knows nothing about for a validator (all unknown) are skipped: they neither
    count as misses nor as signed. More than `max_validator_alerts` validators at once is one
    network-wide alert, not a flood of them. An alert opens as a warning and escalates with the
    heights missed since it opened, or with its jail risk (validator id -> share of the slashing
    window's allowed misses used; None or absent: unknown), see analysis.escalation."""
    if latest is None:
        return [], []
    depth = max(settings.window, settings.resolve_after, settings.consecutive_misses)
    open_ids = [vid for kind, vid in open_alerts if kind == AlertKind.MISSED_VOTES]
    with connection.cursor() as cur:
        # Only validators with a miss in the window, or an open alert to resolve, need a look: on a
        # healthy chain that is nobody, and the window's other rows are never read. The window is a
        # little deeper than the rule's, for heights skipped as unknown.
        cur.execute(
            "SELECT validator_id, height, missed, prevotes, precommits FROM analysis_validatorverdict"
            " WHERE chain_id = %s AND height > %s AND (validator_id = ANY(%s) OR validator_id IN"
            " (SELECT validator_id FROM analysis_validatorverdict WHERE chain_id = %s AND height > %s AND missed))",
            [chain.pk, latest - 2 * depth, open_ids, chain.pk, latest - depth],
        )
        rows = cur.fetchall()
    by_validator: dict[int, list[tuple[int, bool, str, str]]] = defaultdict(list)
    for vid, height, missed, pv, pc in rows:
        if (pv + pc).strip(UNKNOWN):  # anything known about it at this height
            by_validator[vid].append((height, missed, pv, pc))
    findings: list[Finding] = []
    clears: list[Clear] = []
    network: dict[int, tuple[int, int]] | None = None
    # (validator, its missed heights in the window, heights judged, in a row, its latest height)
    qualifying: list[tuple[int, list[int], int, int, dict]] = []
    resolving: list[int] = []
    for vid, history in by_validator.items():
        history.sort(reverse=True)  # newest first
        history = history[:depth]
        consecutive = next((i for i, (_, missed, _, _) in enumerate(history) if not missed), len(history))
        in_window = sum(1 for _, missed, _, _ in history[: settings.window] if missed)
        if consecutive >= settings.consecutive_misses or in_window >= settings.window_misses:
            heights = [h for h, missed, _, _ in history[: settings.window] if missed]
            newest = {"height": history[0][0], "prevotes": history[0][2], "precommits": history[0][3]}
            qualifying.append((vid, heights, min(len(history), settings.window), consecutive, newest))
        elif (
            vid in open_ids
            and len(history) >= settings.resolve_after
            and all(not missed for _, missed, _, _ in history[: settings.resolve_after])
        ):
            resolving.append(vid)
    # Heights missed since each open alert began (its escalation, and what its resolve message
    # says), in one query; a new alert's are the misses in its window.
    starts = {vid: _since_height(open_alerts[(AlertKind.MISSED_VOTES, vid)]) for vid in open_ids}
    counts = missed_since(chain.pk, {v: starts[v] for v in [*(q[0] for q in qualifying), *resolving] if v in starts})
    for vid, heights, judged, consecutive, newest in qualifying:
        # Solo: this validator's trouble. Network-wide: over a third of the set missed with it.
        network = network if network is not None else _missed_per_height(chain, latest - depth)
        wide = any(missed * 3 > size for missed, size in (network.get(h, (0, 1)) for h in heights))
        scope = "network-wide" if wide else "solo"
        missed = max(counts.get(vid, (0, 0))[0], len(heights))
        findings.append(
            Finding(
                AlertKind.MISSED_VOTES,
                vid,
                missed_votes_severity(missed, (jail_risk or {}).get(vid), settings),
                f"missed votes in {len(heights)} of the last {judged} heights ({consecutive} in a row, {scope})",
                heights[0],
                {
                    "heights": heights[:50],
                    "scope": scope,
                    "since_height": starts.get(vid, min(heights)),
                    "missed": missed,
                    "last_missed": heights[0],
                    "latest": newest,
                },
            )
        )
    for vid in resolving:
        note = f"signed the last {settings.resolve_after} heights"
        if vid in counts:  # what its resolve message says: the misses since it opened, the last of them
            missed, last = counts[vid]
            clears.append(Clear(AlertKind.MISSED_VOTES, vid, note, details={"missed": missed, "last_missed": last}))
        else:
            clears.append(Clear(AlertKind.MISSED_VOTES, vid, note))
    return _capped(findings, clears, settings, open_alerts, latest)


def _capped(
    findings: list[Finding], clears: list[Clear], settings: AlertSettings, open_alerts: OpenAlerts, latest: int
) -> Result:
    """Past `max_validator_alerts`, new per-validator alerts become one network-wide alert (the
    open ones are still updated and resolved, so nothing already raised goes silent)."""
    if len(findings) <= settings.max_validator_alerts:
        clear = Clear(AlertKind.MASS_MISSED_VOTES, None, "few validators missing", settings.cooldown_seconds)
        return findings, [*clears, clear]
    kept = [f for f in findings if (f.kind, f.validator_id) in open_alerts]
    mass = Finding(
        AlertKind.MASS_MISSED_VOTES,
        None,
        Severity.CRITICAL,
        f"{len(findings)} validators are missing votes (more than {settings.max_validator_alerts}:"
        " one alert for all of them)",
        latest,
        {"validators": sorted(f.validator_id for f in findings if f.validator_id)[:500], "count": len(findings)},
    )
    return [*kept, mass], clears


def _since_height(alert: Alert) -> int:
    """The first height an open missed-votes alert counts misses from (alerts opened before ctop
    counted them: their first height)."""
    return alert.details.get("since_height") or alert.first_height or 0


def _missed_per_height(chain: Chain, above: int) -> dict[int, tuple[int, int]]:
    """height -> (validators that missed, validators in the set), for heights above `above`."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT h.height, h.missed_validators, (SELECT count(*) FROM analysis_validatorverdict v"
            " WHERE v.chain_id = h.chain_id AND v.height = h.height) FROM analysis_heightverdict h"
            " WHERE h.chain_id = %s AND h.height > %s",
            [chain.pk, above],
        )
        return {height: (missed, size) for height, missed, size in cur.fetchall()}
