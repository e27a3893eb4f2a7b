"""Evaluating every alert rule of one chain, on what the tick read about it: the rules
(analysis.rules) say what holds and what is clear, the lifecycle (analysis.lifecycle) makes the
alerts say so."""

from __future__ import annotations

from datetime import datetime

from consensus.models import Chain
from validators.selectors import latest_known_set

from . import chainstatus, performance, rules
from .lifecycle import apply
from .models import AlertKind, AlertSettings
from .state import ChainState, load_states


def evaluate(
    chain: Chain,
    now: datetime,
    settings: AlertSettings | None = None,
    state: ChainState | None = None,
    *,
    observer_since: datetime | None = None,
    with_performance: bool = True,
) -> None:
    """observer_since: when the analyzer started (blindness before it is not paged at once);
    with_performance: run the rules that read many heights (the analyzer: every few new heights)."""
    settings = settings or AlertSettings.for_chain(chain)
    state = state or load_states([chain])[chain.pk]
    stored = state.latest.height if state.latest else None
    w = rules.watch(chain, state.status, now, stored)
    findings, clears = [], []
    # A missed-votes alert escalates at a jail-risk share too (analysis.escalation): the chain's own
    # counters, from fresh status reads only (one query; none on a chain without a REST API).
    risks = chainstatus.jail_shares(chain_id=chain.pk, now=now) if chain.rest_url else {}
    for found, cleared in (
        rules.missed_votes(chain, settings, state.open_alerts, state.latest_judged, jail_risk=risks),
        rules.halt_risk(chain, settings, now, state.latest, w),
        rules.stalled(chain, settings, now, state.latest, w),
        rules.monitoring(chain, settings, now, w, observer_since),
    ):
        findings += found
        clears += cleared
    if with_performance and state.latest_judged is not None:
        size = len(latest_known_set(chain.pk, state.latest_judged)[0])
        missing = {vid for kind, vid in state.open_alerts if kind == AlertKind.MISSED_VOTES}
        missing |= {f.validator_id for f in findings if f.kind == AlertKind.MISSED_VOTES}
        for found, cleared in (
            performance.slow_validators(chain, settings, state.open_alerts),
            performance.failing_proposers(chain, settings, state.open_alerts, size, missing),
            performance.empty_blocks(chain, settings, state.open_alerts, size, state.latest_judged),
            chainstatus.status_alerts(chain, settings, state.open_alerts, now),
            chainstatus.set_alerts(chain, settings, state.open_alerts, state.latest_judged),
        ):
            findings += found
            clears += cleared
    apply(chain, now, findings, clears, state.open_alerts)
