"""The performance rules (slow validator, failed proposals, empty blocks) and the pages that show
them, on one chain of 150 validators with 10,000 judged heights in the history tier.

Every height keeps each vote's arrival delay (2 bytes, analysis.latency) and a block meta
(consensus.Block); the latest 1,000 heights also have their raw votes (consensus_vote) and proposal
times. Validator 0 is slow (600 ms more), validator 1 fails a proposal in three, validator 2's blocks
are empty. Timed, median of --repeat runs: each rule, one whole evaluation with the performance
rules, the performance page and the validator page.

Baseline, same run and same data: the slow-validator figures over the latest 1,000 heights computed
from the raw votes (each vote's received_at minus its round's proposal time, per-validator
percentiles in SQL), as a monitor without the history tier would have to. Both must name validator 0
as the slowest with the same p95 (within the 10 ms unit), or the benchmark fails.

    .venv/bin/python -m benchmarks.bench_performance [--heights 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import timedelta

from benchmarks._setup import setup_django

VALIDATORS = 150
RAW_HEIGHTS = 1_000
NAME = "bench-perf"


def delay_ms(h: int, idx: int) -> int:
    """A vote's arrival delay after its proposal: 20-119 ms, validator 0 600 ms more."""
    return 20 + (h * 31 + idx * 17) % 100 + (600 if idx == 0 else 0)


def build(heights: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from analysis import history, latency
    from analysis.models import AlertSettings, HeightVerdict
    from consensus.models import Chain
    from consensus.partitions import ensure_range
    from consensus.retention import purge_chain
    from validators.selectors import active_set
    from validators.services import Member, apply_set

    old = Chain.objects.filter(name=NAME).first()
    if old is not None:
        purge_chain(old)
        with connection.cursor() as cur:
            for table in (
                "analysis_heighthistory",
                "analysis_heightverdict",
                "analysis_voterset",
                "analysis_alert",
                "analysis_alertsettings",
            ):
                cur.execute(f"DELETE FROM {table} WHERE chain_id = %s", [old.pk])  # noqa: S608 - our names
        old.delete()
    chain = Chain.objects.create(name=NAME, chain_id=NAME)
    AlertSettings.objects.create(chain=chain, proposer_failures=3)
    apply_set(chain.pk, 1, [Member(f"FE{i:038X}", 1000, i) for i in range(VALIDATORS)])
    ids = [m.validator_id for m in active_set(chain.pk, 1)]  # in set order: index i is validator i
    voters = sorted(ids)
    now = timezone.now()
    start = now - timedelta(seconds=6 * heights)
    turns: dict[int, int] = {}
    with transaction.atomic(), connection.cursor() as cur:
        set_id = history.VoterSets().id_of(cur, chain.pk, voters)
        with cur.copy(
            "COPY analysis_heighthistory (chain_id, height, judged_at, voters_id, rounds, unknown, from_commit,"
            " letters, delays, round_info) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int2", "int8", "timestamptz", "int4", "int2", "bool", "bool", "bytea", "bytea", "bytea"])
            for h in range(1, heights + 1):
                proposer = h % VALIDATORS
                turn = turns[proposer] = turns.get(proposer, 0) + 1
                proposed = not (proposer == 1 and turn % 3 == 0)
                letters = {vid: (1000, "S", "S") for vid in voters}
                delays = {
                    ids[i]: [(latency.units(delay_ms(h, i) / 1000), latency.units((delay_ms(h, i) + 5) / 1000))]
                    for i in range(VALIDATORS)
                }
                info = latency.RoundTiming(
                    ids[proposer], latency.PROPOSED | latency.COMMITTED if proposed else 0, (8, 9)
                )
                copy.write_row(
                    (
                        chain.pk,
                        h,
                        start + timedelta(seconds=6 * h),
                        set_id,
                        1,
                        False,
                        False,
                        history.pack(letters, voters),
                        latency.pack_delays(delays, voters, 1),
                        latency.pack_rounds([info]),
                    )
                )
        # A block meta per height (validator 2's are empty), and the raw votes of the latest heights.
        cur.execute(
            "INSERT INTO consensus_block (chain_id, height, time, proposer_id, txs, size)"
            " SELECT %s, h, %s + h * interval '6 seconds', (%s::int[])[h %% %s + 1],"
            " CASE WHEN h %% %s = 2 THEN 0 ELSE h %% 7 + 1 END, 2000 FROM generate_series(1, %s) h",
            [chain.pk, start, ids, VALIDATORS, VALIDATORS, heights],
        )
        lo = heights - RAW_HEIGHTS + 1
        ensure_range(chain.pk, lo, heights)
        cur.execute(
            "INSERT INTO consensus_round (chain_id, height, round, started_at, proposal_at, endpoint)"
            " SELECT %s, h, 0, %s + h * interval '6 seconds', %s + h * interval '6 seconds' + interval '50 ms', ''"
            " FROM generate_series(%s, %s) h",
            [chain.pk, start, start, lo, heights],
        )
        cur.execute(
            "INSERT INTO consensus_vote (chain_id, height, round, type, validator_id, block_tag, received_at, skew)"
            " SELECT %s, h, 0, t, v.id, 1, %s + h * interval '6 seconds' + interval '50 ms'"
            "  + (20 + (h * 31 + v.idx * 17) %% 100 + CASE WHEN v.idx = 0 THEN 600 ELSE 0 END"
            "     + CASE WHEN t = 2 THEN 5 ELSE 0 END) * interval '1 ms', 0"
            " FROM generate_series(%s, %s) h CROSS JOIN (VALUES (1::smallint), (2::smallint)) tt(t)"
            " CROSS JOIN LATERAL (SELECT id, ord - 1 AS idx FROM unnest(%s::int[]) WITH ORDINALITY u(id, ord)) v"
            " ORDER BY h, t, v.idx",
            [chain.pk, start, lo, heights, ids],
        )
    # The analyzer's mark of its latest judged height (the performance rules run from there).
    HeightVerdict.objects.create(chain=chain, height=heights, judged_at=now, rounds=1, total_power=1000 * VALIDATORS)
    with connection.cursor() as cur:
        for table in ("analysis_heighthistory", "consensus_block", "consensus_round", "consensus_vote"):
            cur.execute(f"ANALYZE {table}")


def baseline_p95(chain_id: int, heights: int) -> list[tuple[int, float]]:
    """Per validator, p95 of (received_at - proposal_at) over the latest `heights`, from raw votes."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "SELECT v.validator_id, percentile_disc(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM"
            " v.received_at - r.proposal_at) * 1000) AS p95 FROM consensus_vote v JOIN consensus_round r"
            " ON r.chain_id = v.chain_id AND r.height = v.height AND r.round = v.round"
            " WHERE v.chain_id = %s AND v.height > (SELECT max(height) FROM consensus_round WHERE chain_id = %s) - %s"
            " GROUP BY v.validator_id ORDER BY p95 DESC",
            [chain_id, chain_id, heights],
        )
        return cur.fetchall()


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    fn()  # warm: caches, compiled templates
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heights", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    setup_django("ctop_bench_performance")
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from analysis import latency, performance
    from analysis.alerts import evaluate
    from analysis.models import Alert, AlertKind, AlertSettings
    from consensus.models import Chain

    print(f"building {args.heights:,} heights x {VALIDATORS} validators ...", flush=True)
    started = time.perf_counter()
    build(args.heights)
    print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    chain = Chain.objects.get(name=NAME)
    settings = AlertSettings.objects.get(chain=chain)
    user, _ = get_user_model().objects.get_or_create(username="bench-viewer")
    client = Client()
    client.force_login(user)
    slow_address = f"FE{0:038X}"

    base_s, base = timed(lambda: baseline_p95(chain.pk, RAW_HEIGHTS), args.repeat)
    ours_s, ours = timed(lambda: latency.chain_latency(chain.pk, RAW_HEIGHTS), args.repeat)
    slowest = max(ours.validators.values(), key=lambda v: v.p95_ms)
    if base[0][0] != slowest.validator_id or abs(base[0][1] - slowest.p95_ms) > 10:
        raise SystemExit(f"the two disagree: raw votes {base[0]}, history tier {slowest}")
    rows = [
        (f"baseline: p95 per validator from raw votes ({RAW_HEIGHTS:,} heights)", base_s),
        (f"chain_latency from the history tier ({RAW_HEIGHTS:,} heights)", ours_s),
    ]
    for window in (100, 1_000, 10_000):
        settings.latency_window = window
        rows.append(
            (
                f"slow_validators rule, window {window:,}",
                timed(lambda: performance.slow_validators(chain, settings, {}), args.repeat)[0],
            )
        )
    settings.latency_window = 100
    rows.append(
        (
            "failing_proposers rule (10 turns)",
            timed(lambda: performance.failing_proposers(chain, settings, {}, VALIDATORS, set()), args.repeat)[0],
        )
    )
    rows.append(
        ("empty_blocks rule", timed(lambda: performance.empty_blocks(chain, settings, {}, VALIDATORS), args.repeat)[0])
    )
    rows.append(("evaluate(), every rule", timed(lambda: evaluate(chain, timezone.now(), settings), args.repeat)[0]))
    for window in (100, 10_000):
        url = f"/chains/{NAME}/performance/?window={window}"
        rows.append(
            (f"performance page, window {window:,}", timed(lambda u=url: client.get(u, secure=True), args.repeat)[0])
        )
    url = f"/chains/{NAME}/validators/{slow_address}/"
    rows.append(("validator page (10,000 heights)", timed(lambda: client.get(url, secure=True), args.repeat)[0]))

    open_kinds = sorted(
        {
            (a.kind, a.validator.address[-2:])
            for a in Alert.objects.filter(chain=chain, is_open=True).select_related("validator")
        }
    )
    print(f"chain: {VALIDATORS} validators, {args.heights:,} judged heights; open alerts: {open_kinds}")
    print(
        f"slowest: validator {slow_address[-2:]}, p95 {slowest.p95_ms:.0f} ms (history),"
        f" {base[0][1]:.0f} ms (raw votes)"
    )
    print(f"{'':62} {'median':>9} {'x baseline':>11}")
    for label, seconds in rows:
        print(f"{label:62} {seconds * 1000:7.1f}ms {seconds / base_s:10.2f}x")
    expected = {(AlertKind.SLOW_VALIDATOR, "00"), (AlertKind.FAILED_PROPOSALS, "01"), (AlertKind.EMPTY_BLOCKS, "02")}
    if not expected <= set(open_kinds):
        raise SystemExit(f"expected alerts missing: {expected - set(open_kinds)}")


if __name__ == "__main__":
    main()
