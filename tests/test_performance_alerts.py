"""The performance alerts' lifecycle on history rows written as the analyzer writes them: a slow
validator and a failing proposer are alerted, their alerts updated while the condition holds, and
resolved once it is over (after the cool-down); a chain slow as a whole alerts nobody."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from analysis import history, latency, performance
from analysis.lifecycle import apply
from analysis.models import Alert, AlertKind, AlertSettings

from .analysishelpers import A, B, C, D, vid

NOW = timezone.now()


def write_heights(chain, heights: range, *, delay_ms, proposed=lambda h: True) -> None:
    """History rows: every validator signed; `delay_ms(h, address)` its votes' arrival delay; the
    round's proposer in turn A, B, C, D, its proposal arrived if `proposed(h)`."""
    addresses = (A, B, C, D)
    ids = {a: vid(chain, a) for a in addresses}
    voters = sorted(ids.values())
    with connection.cursor() as cur:
        set_id = history.VoterSets().id_of(cur, chain.pk, voters)
        for h in heights:
            delays = {ids[a]: [(latency.units(delay_ms(h, a) / 1000),) * 2] for a in addresses}
            ok = proposed(h)
            info = latency.RoundTiming(ids[addresses[h % 4]], latency.PROPOSED | latency.COMMITTED if ok else 0, (3, 4))
            cur.execute(
                "INSERT INTO analysis_heighthistory (chain_id, height, judged_at, voters_id, rounds, unknown,"
                " from_commit, letters, delays, round_info) VALUES (%s, %s, %s, %s, 1, false, false, %s, %s, %s)",
                [
                    chain.pk,
                    h,
                    NOW - timedelta(seconds=6 * (heights.stop - h)),
                    set_id,
                    history.pack({v: (10, "S", "S") for v in voters}, voters),
                    latency.pack_delays(delays, voters, 1),
                    latency.pack_rounds([info]),
                ],
            )


def evaluate(chain, settings, rule) -> set[tuple[str, int]]:
    """One evaluation of `rule` through the lifecycle; the open alerts after it."""
    open_alerts = {(a.kind, a.validator_id): a for a in Alert.objects.filter(chain=chain, is_open=True)}
    found, cleared = rule(open_alerts)
    apply(chain, timezone.now(), found, cleared, open_alerts)
    return {(a.kind, a.validator_id) for a in Alert.objects.filter(chain=chain, is_open=True)}


@pytest.mark.django_db
def test_a_slow_validator_is_alerted_then_resolved_when_its_votes_are_on_time_again(net):
    settings = AlertSettings.objects.create(chain=net, latency_window=40, cooldown_seconds=0)

    def rule(open_alerts):
        return performance.slow_validators(net, settings, open_alerts)

    # D's votes arrive 600 ms after the proposal, the others' 20-60 ms.
    write_heights(net, range(1, 41), delay_ms=lambda h, a: 600 if a == D else 20 + h % 5 * 10)
    assert evaluate(net, settings, rule) == {(AlertKind.SLOW_VALIDATOR, vid(net, D))}
    alert = Alert.objects.get(chain=net, kind=AlertKind.SLOW_VALIDATOR)
    assert alert.details["p95_ms"] == 600 and "p95 600 ms" in alert.summary
    assert evaluate(net, settings, rule) == {(AlertKind.SLOW_VALIDATOR, vid(net, D))}  # still slow: updated
    assert Alert.objects.filter(chain=net, kind=AlertKind.SLOW_VALIDATOR).count() == 1
    # D is on time again for a whole window: the alert resolves.
    write_heights(net, range(41, 81), delay_ms=lambda h, a: 20 + h % 5 * 10)
    assert evaluate(net, settings, rule) == set()
    alert.refresh_from_db()
    assert not alert.is_open and alert.resolved_at is not None


@pytest.mark.django_db
def test_a_chain_slow_as_a_whole_alerts_nobody(net):
    settings = AlertSettings.objects.create(chain=net, latency_window=40)
    write_heights(net, range(1, 41), delay_ms=lambda h, a: 900 + h % 7 * 20)  # everyone ~1 s late
    assert performance.slow_validators(net, settings, {}) == ([], [])


@pytest.mark.django_db
def test_a_failing_proposer_is_alerted_then_resolved_when_it_proposes_again(net):
    settings = AlertSettings.objects.create(
        chain=net, proposer_turns=6, proposer_failures=2, cooldown_seconds=0, latency_window=40
    )

    def rule(open_alerts):
        return performance.failing_proposers(net, settings, open_alerts, set_size=4, missing=set())

    # A (proposer at heights h % 4 == 0) fails every other turn; the others always propose.
    write_heights(net, range(1, 49), delay_ms=lambda h, a: 30, proposed=lambda h: h % 4 != 0 or h % 8 != 0)
    assert evaluate(net, settings, rule) == {(AlertKind.FAILED_PROPOSALS, vid(net, A))}
    assert Alert.objects.get(chain=net, kind=AlertKind.FAILED_PROPOSALS).details["recent"].count("-") >= 2
    # Its next six turns all proposed: resolved.
    write_heights(net, range(49, 73), delay_ms=lambda h, a: 30)
    assert evaluate(net, settings, rule) == set()
    # An offline validator (already alerted for missing votes) is not alerted for its proposals too.
    write_heights(net, range(73, 121), delay_ms=lambda h, a: 30, proposed=lambda h: h % 4 != 0)
    found, _ = performance.failing_proposers(net, settings, {}, set_size=4, missing={vid(net, A)})
    assert found == []
    found, _ = performance.failing_proposers(net, settings, {}, set_size=4, missing=set())
    assert [f.validator_id for f in found] == [vid(net, A)]
