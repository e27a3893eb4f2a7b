"""The performance rules: a validator whose votes arrive late (before it misses any), a proposer
whose proposals do not arrive, and one whose blocks are empty on a chain with traffic. Like
analysis.rules they return findings and clears; the lifecycle turns them into alerts.

They read the history tier (and the block metas) over many heights, so the analyzer runs them when a chain has a few new
judged heights (EVERY), not on every tick.
"""

from __future__ import annotations

from common.text import redact_url
from consensus.models import Chain, Endpoint

from . import blocks, latency
from .lifecycle import Clear, Finding, OpenAlerts
from .models import AlertKind, AlertSettings, Severity

Result = tuple[list[Finding], list[Clear]]

EVERY = 10  # new judged heights between two evaluations
MIN_VALIDATORS = 3  # a chain median needs a few validators
MAX_PROPOSER_HEIGHTS = 20_000  # heights read at most to find each proposer's last turns
# Empty blocks: a streak of empty blocks from one proposer alerts only where chance cannot explain
# it: the other proposers' share of empty blocks, to the streak's power, under this. On a chain where
# 5% of blocks are empty that takes 4 in a row; on a quiet chain (most blocks empty) never.
EMPTY_CHANCE = 1e-4
MIN_OTHERS = 10  # the other proposers' blocks over a streak needed to judge it


def _vantage_name(endpoint_id: int | None) -> str:
    endpoint = Endpoint.objects.filter(pk=endpoint_id).first() if endpoint_id else None
    return redact_url(endpoint.url) if endpoint else "an unknown endpoint"


def slow_validators(chain: Chain, settings: AlertSettings, open_alerts: OpenAlerts) -> Result:
    """A validator whose p95 arrival delay is over `slow_factor` times the chain's median p95 (and
    over `slow_min_ms`), or that is almost always after the quorum while most validators are not.
    Relative to the chain's own median: a chain slow as a whole alerts nobody."""
    window = max(10, settings.latency_window)
    stats = latency.chain_latency(chain.pk, window)
    # Enough votes to say: a validator judged on a quarter of the window's heights at least.
    judged = {vid: v for vid, v in stats.validators.items() if v.votes >= window // 4}
    open_ids = {vid for kind, vid in open_alerts if kind == AlertKind.SLOW_VALIDATOR}
    if len(judged) < MIN_VALIDATORS:
        return [], []
    median_p95 = sorted(v.p95_ms for v in judged.values())[len(judged) // 2]
    median_late = sorted(v.after_quorum for v in judged.values())[len(judged) // 2]
    bound = max(settings.slow_min_ms, settings.slow_factor * median_p95)
    where = _vantage_name(stats.vantage)
    findings, clears = [], []
    for vid, v in judged.items():
        slow = v.p95_ms > bound
        behind = 0 < settings.slow_after_quorum <= v.after_quorum and median_late < 0.5
        if slow or behind:
            findings.append(
                Finding(
                    AlertKind.SLOW_VALIDATOR,
                    vid,
                    Severity.WARNING,
                    f"votes arrive late: p95 {v.p95_ms:.0f} ms (chain median {median_p95:.0f} ms),"
                    f" {100 * v.after_quorum:.0f}% after quorum, last {stats.heights} heights",
                    None,
                    {
                        "p50_ms": v.p50_ms,
                        "p95_ms": v.p95_ms,
                        "after_quorum": round(v.after_quorum, 3),
                        "chain_median_p95_ms": median_p95,
                        "bound_ms": bound,
                        "heights": stats.heights,
                        "measured_at": where,
                    },
                )
            )
        elif vid in open_ids:
            clears.append(Clear(AlertKind.SLOW_VALIDATOR, vid, f"p95 {v.p95_ms:.0f} ms", settings.cooldown_seconds))
    return findings, clears


def failing_proposers(
    chain: Chain, settings: AlertSettings, open_alerts: OpenAlerts, set_size: int, missing: set[int]
) -> Result:
    """A validator whose proposal did not arrive in `proposer_failures` of its last `proposer_turns`
    turns (a proposal that arrived but whose round was lost is the other validators' doing).
    `missing`: validators already alerted for missing votes: an offline validator proposes nothing
    either, and one alert says so."""
    if settings.proposer_failures <= 0 or set_size <= 0:
        return [], []
    turns = max(1, settings.proposer_turns)
    records = latency.proposers(chain.pk, min(MAX_PROPOSER_HEIGHTS, 2 * turns * set_size))
    open_ids = {vid for kind, vid in open_alerts if kind == AlertKind.FAILED_PROPOSALS}
    findings, clears = [], []
    for vid, rec in records.items():
        recent = rec.recent[:turns]
        failed = recent.count("-")
        if failed >= settings.proposer_failures and vid not in missing:
            findings.append(
                Finding(
                    AlertKind.FAILED_PROPOSALS,
                    vid,
                    Severity.WARNING,
                    f"no proposal in {failed} of its last {len(recent)} turns as proposer",
                    None,
                    {"recent": recent, "turns": rec.turns, "proposed": rec.proposed, "committed": rec.committed},
                )
            )
        elif vid in open_ids and len(recent) >= min(turns, settings.proposer_failures) and failed == 0:
            clears.append(Clear(AlertKind.FAILED_PROPOSALS, vid, f"proposed its last {len(recent)} turns"))
    return findings, clears


def empty_blocks(
    chain: Chain, settings: AlertSettings, open_alerts: OpenAlerts, set_size: int, judged_to: int | None = None
) -> Result:
    """A validator whose latest `empty_blocks` blocks or more, in a row, carried no transaction while
    the other proposers' blocks carry some (tenderduty's "consecutive empty blocks"): its mempool or
    its node is broken, and the chain's users wait a turn. Needs block metas (analysis.blocks).

    The others are compared over the streak's own heights: traffic stops for everyone at once, and a
    chain that has just gone quiet is not a proposer's fault. Their empty share is smoothed ((e+1) /
    (n+2)) and needs MIN_OTHERS blocks, so a few blocks of a young chain prove nothing."""
    if settings.empty_blocks <= 0 or set_size <= 0:
        return [], []
    window = min(MAX_PROPOSER_HEIGHTS, max(200, 2 * max(1, settings.proposer_turns) * set_size))
    above = judged_to - window if judged_to is not None else None
    stats = blocks.chain_blocks(chain.pk, window, above=above)
    open_ids = {vid for kind, vid in open_alerts if kind == AlertKind.EMPTY_BLOCKS}
    findings, clears = [], []
    for vid, rec in stats.by_proposer.items():
        chance, share, others = 1.0, 1.0, 0
        if rec.streak and rec.streak_from is not None:
            others, others_empty = stats.others_since(vid, rec.streak_from)
            share = (others_empty + 1) / (others + 2)
            chance = share**rec.streak if others >= MIN_OTHERS else 1.0
        if rec.streak >= settings.empty_blocks and chance < EMPTY_CHANCE:
            findings.append(
                Finding(
                    AlertKind.EMPTY_BLOCKS,
                    vid,
                    Severity.WARNING,
                    f"its last {rec.streak} blocks were empty; {100 * (1 - share):.0f}% of the {others} blocks"
                    " the others proposed meanwhile carried transactions",
                    None,
                    {
                        "streak": rec.streak,
                        "since_height": rec.streak_from,
                        "blocks": rec.blocks,
                        "empty": rec.empty,
                        "others_blocks": others,
                        "others_empty_share": round(share, 3),
                    },
                )
            )
        elif vid in open_ids and (rec.streak == 0 or chance >= EMPTY_CHANCE):
            note = "its latest block carried transactions" if rec.streak == 0 else "the chain is quiet as a whole"
            clears.append(Clear(AlertKind.EMPTY_BLOCKS, vid, note, settings.cooldown_seconds))
    # A validator that proposes no more (jailed, left the set): nothing says its blocks are empty now.
    for vid in open_ids - set(stats.by_proposer):
        clears.append(Clear(AlertKind.EMPTY_BLOCKS, vid, "no block of its in the window", settings.cooldown_seconds))
    return findings, clears
