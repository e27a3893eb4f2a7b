"""Alert rules and their lifecycle. An alert opens once when its condition starts, is updated while
it lasts and resolves when it ends. The partial unique constraint on open alerts makes a restart or
a second analyzer harmless: whoever comes second updates the open alert instead of duplicating it."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime

from django.db import IntegrityError, transaction

from consensus.models import Chain, ChainStatus, Round, Vote, VoteType
from validators.selectors import active_set

from .models import Alert, AlertKind, AlertSettings, HeightVerdict, RoundVerdict, Severity, ValidatorVerdict
from .notify import enqueue


def raise_or_update(
    chain: Chain,
    kind: str,
    validator_id: int | None,
    *,
    now: datetime,
    severity: int,
    summary: str,
    height: int | None = None,
    details: dict | None = None,
) -> Alert:
    for _ in range(2):
        alert = Alert.objects.filter(chain=chain, kind=kind, validator_id=validator_id, is_open=True).first()
        if alert is not None:
            alert.count += 1
            alert.updated_at = now
            alert.severity = max(alert.severity, severity)
            alert.summary = summary[:255]
            alert.last_height = height if height is not None else alert.last_height
            alert.details = {**alert.details, **(details or {})}
            alert.save()
            return alert
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    chain=chain,
                    kind=kind,
                    validator_id=validator_id,
                    severity=severity,
                    opened_at=now,
                    updated_at=now,
                    first_height=height,
                    last_height=height,
                    summary=summary[:255],
                    details=details or {},
                )
                enqueue(alert, "opened")
                return alert
        except IntegrityError:
            continue  # another analyzer opened it a moment ago: update that one
    raise RuntimeError("could not open or update the alert")  # pragma: no cover


def resolve(chain: Chain, kind: str, validator_id: int | None, *, now: datetime, note: str = "") -> Alert | None:
    alert = Alert.objects.filter(chain=chain, kind=kind, validator_id=validator_id, is_open=True).first()
    if alert is None:
        return None
    alert.is_open = False
    alert.resolved_at = alert.updated_at = now
    if note:
        alert.details = {**alert.details, "resolution": note}
    alert.save()
    enqueue(alert, "resolved")
    return alert


def evaluate_missed_votes(chain: Chain, settings: AlertSettings, now: datetime) -> None:
    """A validator missed votes in `consecutive_misses` heights in a row, or in `window_misses` of the
    last `window` judged heights. Resolves after `resolve_after` fully signed heights in a row."""
    latest = HeightVerdict.objects.filter(chain=chain).order_by("-height").values_list("height", flat=True).first()
    if latest is None:
        return
    depth = max(settings.window, settings.resolve_after, settings.consecutive_misses)
    rows = ValidatorVerdict.objects.filter(chain=chain, height__gt=latest - depth).values_list(
        "validator_id", "height", "missed", "prevotes", "precommits"
    )
    by_validator: dict[int, list[tuple[int, bool, str, str]]] = defaultdict(list)
    for vid, height, missed, pv, pc in rows:
        by_validator[vid].append((height, missed, pv, pc))
    network = dict(
        HeightVerdict.objects.filter(chain=chain, height__gt=latest - depth).values_list("height", "missed_validators")
    )
    sizes = Counter(height for history in by_validator.values() for height, *_ in history)
    open_ids = set(
        Alert.objects.filter(chain=chain, kind=AlertKind.MISSED_VOTES, is_open=True).values_list(
            "validator_id", flat=True
        )
    )
    for vid, history in by_validator.items():
        history.sort(reverse=True)  # newest first
        consecutive = next((i for i, (_, missed, _, _) in enumerate(history) if not missed), len(history))
        in_window = sum(1 for _, missed, _, _ in history[: settings.window] if missed)
        if consecutive >= settings.consecutive_misses or in_window >= settings.window_misses:
            heights = [h for h, missed, _, _ in history[: settings.window] if missed]
            # Solo: this validator's trouble. Network-wide: over a third of the set missed with it.
            wide = any(network.get(h, 0) * 3 > sizes[h] for h in heights)
            scope = "network-wide" if wide else "solo"
            raise_or_update(
                chain,
                AlertKind.MISSED_VOTES,
                vid,
                now=now,
                severity=Severity.CRITICAL if consecutive >= settings.window_misses else Severity.WARNING,
                summary=f"missed votes in {in_window} of the last {min(len(history), settings.window)} heights"
                f" ({consecutive} in a row, {scope})",
                height=heights[0],
                details={
                    "heights": heights[:50],
                    "scope": scope,
                    "latest": {"height": history[0][0], "prevotes": history[0][2], "precommits": history[0][3]},
                },
            )
        elif (
            vid in open_ids
            and all(not missed for _, missed, _, _ in history[: settings.resolve_after])
            and len(history) >= settings.resolve_after
        ):
            resolve(
                chain, AlertKind.MISSED_VOTES, vid, now=now, note=f"signed the last {settings.resolve_after} heights"
            )


def live_halt_risk(chain: Chain, settings: AlertSettings, now: datetime) -> tuple[int, int, str] | None:
    """The height in progress: its latest round has lacked +2/3 of the power prevoting for longer
    than `halt_after_seconds` (a chain that is halting right now, long before any height can be
    judged). Returns (height, round, summary) or None."""
    latest = (
        Round.objects.filter(chain=chain)
        .order_by("-height", "-round")
        .values_list("height", "round", "started_at")
        .first()
    )
    if latest is None:
        return None
    height, round_, started = latest
    waited = (now - started).total_seconds()
    if waited <= settings.halt_after_seconds:
        return None
    # The set of the height in progress may not be indexed yet; the previous height's is a close estimate.
    members = {m.validator_id: m.voting_power for m in active_set(chain.pk, height)} or {
        m.validator_id: m.voting_power for m in active_set(chain.pk, height - 1)
    }
    total = sum(members.values())
    if not total:
        return None
    voters = Vote.objects.filter(chain=chain, height=height, round=round_, type=VoteType.PREVOTE).values_list(
        "validator_id", flat=True
    )
    prevoted = sum(members.get(v, 0) for v in set(voters))
    if prevoted * 3 > total * 2:
        return None
    return (
        height,
        round_,
        f"halt risk at height {height} round {round_}: only {100 * prevoted // total}% of the power prevoted"
        f" in {int(waited)}s",
    )


def evaluate_halt_risk(chain: Chain, settings: AlertSettings, now: datetime) -> None:
    """More than 1/3 of the power missing in a round of the latest judged heights, rounds climbing at
    one height (3 or more), or the height in progress stuck without +2/3 prevoting."""
    unknown = set(
        HeightVerdict.objects.filter(chain=chain, unknown=True)
        .order_by("-height")
        .values_list("height", flat=True)[:30]
    )
    # Power "missing" at heights ctop did not fully see says nothing about the chain.
    recent = [
        rv
        for rv in RoundVerdict.objects.filter(chain=chain).order_by("-height", "-round")[:30]
        if rv.height not in unknown
    ]
    risky = []
    if recent:
        latest = recent[0].height
        for rv in recent:
            if rv.height > latest - settings.resolve_after and (
                rv.missing_prevote_power * 3 > rv.total_power
                or rv.missing_precommit_power * 3 > rv.total_power
                or rv.round >= 2
            ):
                risky.append(rv)
    live = live_halt_risk(chain, settings, now)
    if live is not None:
        height, round_, summary = live
        raise_or_update(
            chain,
            AlertKind.HALT_RISK,
            None,
            now=now,
            severity=Severity.CRITICAL,
            height=height,
            summary=summary,
            details={"height": height, "round": round_, "live": True},
        )
    elif risky and risky[0].height > latest - 3:
        worst = risky[0]
        raise_or_update(
            chain,
            AlertKind.HALT_RISK,
            None,
            now=now,
            severity=Severity.CRITICAL,
            height=worst.height,
            summary=f"halt risk at height {worst.height} round {worst.round}: "
            f"{100 * worst.missing_precommit_power // max(worst.total_power, 1)}% of the power did not "
            f"precommit",
            details={"height": worst.height, "round": worst.round, "live": False},
        )
    elif recent and not risky:
        resolve(chain, AlertKind.HALT_RISK, None, now=now, note=f"{settings.resolve_after} healthy heights")


def evaluate_stalled(chain: Chain, settings: AlertSettings, now: datetime) -> None:
    latest = Round.objects.filter(chain=chain).order_by("-height", "round").values_list("height", "started_at").first()
    if latest is None:
        return
    height, started = latest
    age = (now - started).total_seconds()
    if age > settings.stall_after_seconds:
        raise_or_update(
            chain,
            AlertKind.STALLED,
            None,
            now=now,
            severity=Severity.CRITICAL,
            height=height,
            summary=f"no new height for {int(age)}s (stuck at {height})",
            details={"height": height},
        )
    else:
        resolve(chain, AlertKind.STALLED, None, now=now, note=f"height {height} started")


def evaluate_monitoring(chain: Chain, now: datetime) -> None:
    status = ChainStatus.objects.filter(chain=chain).first()
    if status is None:
        return
    if status.state != "connected":
        raise_or_update(
            chain,
            AlertKind.MONITORING_GAP,
            None,
            now=now,
            severity=Severity.CRITICAL,
            summary=f"ctop is blind on {chain.name}: {status.state} {status.reason}"[:255],
            details={"state": status.state, "reason": status.reason[:500]},
        )
    else:
        resolve(chain, AlertKind.MONITORING_GAP, None, now=now, note=f"connected to {status.endpoint}")


def evaluate(chain: Chain, now: datetime) -> None:
    settings = AlertSettings.for_chain(chain)
    evaluate_missed_votes(chain, settings, now)
    evaluate_halt_risk(chain, settings, now)
    evaluate_stalled(chain, settings, now)
    evaluate_monitoring(chain, now)
