"""The validator page's time charts: bucket choice (analysis.charts), the bounded read of the
history tier (analysis.timeline), and the page that draws them."""

from __future__ import annotations

import itertools
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from analysis import charts, history, latency, timeline
from analysis.charts import DASH, DAY, HOUR, MINUTE, WEEK, HeightPoint
from analysis.models import HeightHistory, VoterSet

from .analysishelpers import A, B, C, D, vid

NO = latency.NO_DELAY
T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- pure: bucket choice, bucketing, percentiles, geometry ---


def test_bucket_size_fits_fifty_heights_and_a_year():
    # 50 heights of 6 s: 15 s buckets, 20 of them, 2-3 heights each (not 300 one-height buckets).
    assert charts.bucket_seconds(49 * 6, 50) == 15
    # A year read as 3,000 sampled heights: a week a bucket, 53 buckets.
    assert charts.bucket_seconds(365 * DAY, 3000) == WEEK
    for name, seconds in charts.RANGES.items():
        if seconds is None:
            continue
        heights = min(seconds // 6, timeline.MAX_ROWS)
        step = charts.bucket_seconds(seconds, heights)
        buckets = charts.bucketize([], T0 - timedelta(seconds=seconds), T0, step, 0)
        assert 30 <= len(buckets) <= 120, (name, step, len(buckets))
    assert charts.bucket_seconds(HOUR, 600) == MINUTE and charts.bucket_seconds(DAY, 3000) == 15 * MINUTE
    assert charts.bucket_seconds(7 * DAY, 3000) == 2 * HOUR


def test_buckets_hold_hand_computed_participation_and_percentiles_and_gaps_stay_empty():
    points = [
        HeightPoint(at(5), False, [10, 20, 30, 40], "C"),
        HeightPoint(at(20), True, [50], ""),
        HeightPoint(at(59), False, [], "-P"),
        # nothing in 60..120: a gap
        HeightPoint(at(130), False, [7], None),  # no timing kept for this height
    ]
    step = 60
    buckets = charts.bucketize(points, at(0), at(170), step, 0)
    assert [b.heights for b in buckets] == [3, 0, 1]
    first, gap, last = buckets
    assert first.signed_share == pytest.approx(2 / 3)
    # Nearest rank over 10, 20, 30, 40, 50 ms x10: p50 the 3rd value, p95 the 5th.
    assert (first.delay_ms(0.5), first.delay_ms(0.95)) == (300, 500)
    assert (first.committed, first.lost, first.absent, first.timed) == (1, 1, 1, 3)
    assert gap.signed_share is None and gap.delay_ms(0.5) is None and gap.turns == 0
    assert last.timed == 0 and last.delays == [7]

    frame = charts.Frame(buckets, step, UTC)
    part = charts.participation_chart(frame, sampled=False)
    assert len(part.bars) == 2  # nothing drawn for the gap
    assert part.bars[0].title == f"12:00{DASH}12:01 · 66.7% without a miss · missed 1 of 3 heights"
    assert part.bars[0].css == "bad" and part.bars[1].css == "ok"
    assert part.bars[1].x > part.bars[0].x + 2 * part.bars[0].w - 1  # the gap shows between them
    delays = charts.delay_chart(frame)
    assert len(delays.dots) == 4 and not delays.lines  # two lone points per series: no line over the gap
    assert "p50 300 ms · p95 500 ms · 5 timed votes" in delays.dots[0].title
    props = charts.proposal_chart(frame, sampled=True)
    # One bucket of turns (committed, lost, absent stacked); the other two have no timing: nothing.
    assert [b.css for b in props.bars] == ["ok", "warn", "bad"]
    assert props.bars[0].title.endswith(
        "3 turns: 1 committed, 1 proposed but round lost, 1 without a proposal (3 heights read)"
    )
    assert [t.label for t in props.yticks] == ["0", "1", "2", "3"]  # whole turns


def test_zero_percent_is_a_hairline_and_no_turns_is_told_apart_from_no_data():
    buckets = charts.bucketize([HeightPoint(at(1), True, [], "")], at(0), at(50), 60, 0)
    frame = charts.Frame(buckets, 60, UTC)
    (bar,) = charts.participation_chart(frame, False).bars
    assert bar.h == 1 and "0.0% without a miss" in bar.title
    (none,) = charts.proposal_chart(frame, False).bars
    assert none.css == "zero" and "no turns in 1 height" in none.title


def test_ticks_are_round_and_time_labels_follow_the_bucket_size():
    assert charts.nice_ticks(730) == [0, 200, 400, 600, 800]
    assert charts.nice_ticks(3, integer=True) == [0, 1, 2, 3]
    assert charts.time_label(T0, MINUTE, HOUR, UTC) == "12:00"
    assert charts.time_label(T0, 10, 300, UTC) == "12:00:00"
    assert charts.time_label(T0, DAY, 30 * DAY, UTC) == "03-04"
    assert charts.time_label(T0, 8 * WEEK, 365 * DAY, UTC) == "2026-03-04"
    # A week's buckets start on Mondays (2026-03-02), a day's at midnight.
    assert charts.align(T0, WEEK, 0) == datetime(2026, 3, 2, tzinfo=UTC)
    assert charts.align(T0 + timedelta(hours=3), DAY, 0) == datetime(2026, 3, 4, tzinfo=UTC)
    # A year: labels fit side by side, inside the chart.
    step, (part, _, _) = charts.validator_charts(
        [HeightPoint(at(i * DAY), False, [], None) for i in range(365)], at(0), at(364 * DAY), UTC
    )
    labels = part.xticks
    assert step == WEEK and 3 <= len(labels) <= 8
    width = max(len(t.label) for t in labels) * charts.CHAR_PX
    assert all(b.pos - a.pos > width for a, b in itertools.pairwise(labels))
    assert all(t.pos - width / 2 >= charts.LEFT - 6 and t.pos + width / 2 <= charts.WIDTH for t in labels)


# --- the bounded read of the history tier ---


def voter_set(chain, ids: list[int]) -> int:
    return VoterSet.objects.create(chain=chain, validators=ids, digest=history.digest(ids)).pk


def row(chain, set_id, height, when, letters, delays=None, rounds=None, vantage=None) -> HeightHistory:
    return HeightHistory(
        chain=chain,
        height=height,
        judged_at=when,
        voters_id=set_id,
        rounds=max(1, len(rounds or [])),
        letters=letters,
        delays=delays,
        round_info=latency.pack_rounds(rounds) if rounds is not None else None,
        vantage=vantage,
    )


def fill(chain, set_id: int, lo: int, hi: int, last_at: datetime, seconds: int = 6) -> None:
    """History rows lo..hi in SQL, one per `seconds`, the last judged at `last_at`, for a set of
    four validators: the fourth misses ~10% of heights (chosen by a hash of the height, so no stride
    lines up with them), its votes arrive (height % 50) x 10 ms after the proposal (the others' 10 ms),
    and the set's validators propose in turn; every round committed."""
    ids = VoterSet.objects.get(pk=set_id).validators
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO analysis_heighthistory (chain_id, height, judged_at, voters_id, rounds, unknown,
                from_commit, letters, delays, round_info)
            SELECT %(chain)s, g, %(last)s - (%(hi)s - g) * %(seconds)s * interval '1 second', %(set)s, 1,
                false, false,
                '\\x111111'::bytea || CASE WHEN get_byte(decode(md5(g::text), 'hex'), 0) < 26
                                            THEN '\\x33'::bytea ELSE '\\x11'::bytea END,
                decode(repeat('01000100', 3) || repeat(lpad(to_hex(g %% 50), 2, '0') || '00', 2), 'hex'),
                -- ROUND_INFO: the proposer's id (int32, little-endian), no quorum times, PROPOSED | COMMITTED
                decode(lpad(to_hex(p & 255), 2, '0') || lpad(to_hex(p >> 8 & 255), 2, '0')
                       || lpad(to_hex(p >> 16 & 255), 2, '0') || lpad(to_hex(p >> 24), 2, '0')
                       || '00800080' || '0300', 'hex')
            FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
            CROSS JOIN LATERAL (SELECT (%(ids)s::int[])[g %% 4 + 1] AS p) AS proposer
            """,
            {"chain": chain.pk, "set": set_id, "lo": lo, "hi": hi, "last": last_at, "seconds": seconds, "ids": ids},
        )


@pytest.mark.django_db
def test_only_the_validators_bytes_are_read_and_decoded_like_chain_latency(net):
    a, b, c, d = (vid(net, x) for x in (A, B, C, D))
    ids = sorted([a, b, c])  # D is not in this set
    set_id = voter_set(net, ids)
    pos = ids.index(b)
    # Height 5: two rounds. Round 0: B proposed and nothing arrived (its delays count from the round
    # start: left out); round 1 committed A's block, B's votes 120 and 340 ms after it.
    letters = history.pack({a: (10, "SS", "SS"), b: (10, "SS", "MS"), c: (10, "NS", "NS")}, ids)
    delays = latency.pack_delays({a: [(1, 1), (2, 2)], b: [(900, 900), (12, 34)], c: [(3, 3), (4, 4)]}, ids, 2)
    rounds = [latency.RoundTiming(b, 0, (NO, NO)), latency.RoundTiming(a, latency.PROPOSED | latency.COMMITTED, (5, 9))]
    HeightHistory.objects.bulk_create(
        [
            row(net, set_id, 5, at(0), letters, delays, rounds, vantage=7),
            row(net, set_id, 6, at(6), history.pack({a: (10, "S", "S"), b: (10, "S", "S"), c: (10, "S", "S")}, ids)),
            row(net, set_id, 7, at(12), letters, delays, rounds, vantage=8),  # timed elsewhere: left out
            row(net, set_id, 8, at(18), letters, delays, rounds, vantage=7),
        ]
    )
    with connection.cursor() as cur:
        rows = timeline.sample(cur, net.pk, [(set_id, pos, 3)], 5, 8, 1)
    assert [len(r[3]) for r in rows] == [2, 1, 2, 2]  # one letter byte per round: B's only
    # Its letters at pos and 3 + pos; its two delays of round k at bytes 4 * (3k + pos) ... + 4.
    assert bytes(rows[0][3]) == letters[pos].to_bytes() + letters[3 + pos].to_bytes()
    assert bytes(rows[0][4]) == delays[4 * pos : 4 * pos + 4] + delays[4 * (3 + pos) : 4 * (3 + pos) + 4]
    read = timeline.read(net.pk, b)
    assert read.rows == 4 and read.stride == 1 and (read.first, read.last) == (5, 8)
    assert (read.vantage, read.other_vantages) == (7, 1)
    assert [p.missed for p in read.points] == [True, False, True, True]
    assert [p.delays for p in read.points] == [[12, 34], [], [], [12, 34]]  # round 0 (no proposal) left out
    assert [p.turns for p in read.points] == ["-", None, "-", "-"]
    assert timeline.read(net.pk, a).points[0].turns == "C"
    # The same votes as the performance figures (latency.chain_latency) count, from the whole rows.
    mine = sorted(d for p in read.points for d in p.delays)
    figures = latency.chain_latency(net.pk, 10).validators[b]
    assert figures.votes == len(mine) == 4
    assert (figures.p50_ms, figures.p95_ms) == (latency.percentile(mine, 0.5) * 10, latency.percentile(mine, 0.95) * 10)
    assert timeline.read(net.pk, d).rows == 0  # never in a recorded set


@pytest.mark.django_db
def test_a_long_range_is_sampled_to_the_bound_and_stays_close_to_the_truth(net, user_client):
    ids = sorted(vid(net, x) for x in (A, B, C, D))
    set_id = voter_set(net, ids)
    now = timezone.now()
    fill(net, set_id, 1, 20_000, now)
    d = ids[3]
    with connection.cursor() as cur:
        cur.execute(
            "SELECT avg((get_byte(letters, 3) = 51)::int) FROM analysis_heighthistory WHERE chain_id = %s", [net.pk]
        )
        true_missed = float(cur.fetchone()[0])
    assert 0.08 < true_missed < 0.12

    read = timeline.read(net.pk, d)
    assert read.stride == 7 and read.rows == len(read.points) == 2858  # ceil(20,000 / 3,000) = 7
    assert read.rows <= timeline.MAX_ROWS
    sampled = sum(p.missed for p in read.points) / read.rows
    assert abs(sampled - true_missed) < 0.02
    # The delays decode as written: (height % 50) x 10 ms, both votes.
    by_height = dict(zip(range(1, 20_001, 7), read.points, strict=False))
    assert by_height[57].delays == [7, 7] and by_height[57].turns == ("C" if 57 % 4 == 3 else "")

    # The last hour holds 600 of those heights: read exactly, every one.
    hour = timeline.read(net.pk, d, since=now - timedelta(hours=1) + timedelta(seconds=1))
    assert hour.stride == 1 and hour.rows == 600 and (hour.first, hour.last) == (19_401, 20_000)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM analysis_heighthistory WHERE chain_id = %s AND height > 19400"
            " AND get_byte(letters, 3) = 51",
            [net.pk],
        )
        assert sum(p.missed for p in hour.points) == cur.fetchone()[0]  # exact: nothing sampled

    started = time.monotonic()
    html = user_client.get(reverse("analysis:validator", args=[net.name, D])).content.decode()
    elapsed = time.monotonic() - started
    print(f"validator page on 20,000 history rows: {elapsed * 1000:.0f} ms")
    assert f"one height in every 7 of 1{DASH}20000 (2858 heights read)" in html
    assert elapsed < 10


# --- the page ---


def fifty(net) -> int:
    """50 heights of 6 s ending now, D missing heights 10-14; D proposes every fourth height."""
    ids = sorted(vid(net, x) for x in (A, B, C, D))
    set_id = voter_set(net, ids)
    now = timezone.now() - timedelta(seconds=30)
    rows = []
    for h in range(1, 51):
        miss = 10 <= h <= 14
        letters = history.pack({i: (10, "S", "M" if miss and i == ids[3] else "S") for i in ids}, ids)
        delays = latency.pack_delays({i: [(h, 2 * h)] for i in ids}, ids, 1)
        info = [latency.RoundTiming(ids[h % 4], latency.PROPOSED | latency.COMMITTED, (NO, NO))]
        rows.append(row(net, set_id, h, now - timedelta(seconds=6 * (50 - h)), letters, delays, info, vantage=1))
    HeightHistory.objects.bulk_create(rows)
    return ids[3]


def svg(html: str, chart_id: str) -> str:
    return html.split(f'<svg id="{chart_id}"')[1].split("</svg>")[0]


@pytest.mark.django_db
def test_the_page_draws_three_charts_with_tooltips_for_fifty_heights(net, user_client):
    fifty(net)
    html = user_client.get(reverse("analysis:validator", args=[net.name, D])).content.decode()
    assert f"All 50 of its heights 1{DASH}50" in html and "in buckets of 15 seconds" in html
    part, delays, props = svg(html, "participation"), svg(html, "delays"), svg(html, "proposals")
    # Twenty 15 s buckets of 2-3 heights (the first and last may be partial): every height once.
    titles = re.findall(r"<title>([^<]*)</title>", part)
    assert 19 <= len(titles) <= 21
    assert sum(int(m) for m in re.findall(r"missed (\d+) of", part)) == 5
    assert sum(int(n) for n in re.findall(r"of (\d+) heights?<", part)) == 50
    assert re.search(rf"\d\d:\d\d:\d\d{DASH}\d\d:\d\d:\d\d · 100\.0% without a miss · missed 0 of \d heights<", part)
    assert "ms · p95" in delays and "timed votes" in delays and "<polyline" in delays
    assert re.search(r"<title>[^<]*\d+ turns: \d+ committed", props)
    assert ">100%<" in part and " ms<" in delays  # labelled y axes


@pytest.mark.django_db
def test_the_page_with_no_heights_and_with_a_bogus_or_empty_range(net, user_client):
    url = reverse("analysis:validator", args=[net.name, D])
    html = user_client.get(url).content.decode()
    assert "No judged heights for this validator yet" in html and "<svg" not in html
    fifty(net)
    bogus = user_client.get(url, {"range": "bogus'><script>"})
    assert bogus.status_code == 200
    page = bogus.content.decode()
    assert '<svg id="participation"' in page and 'href="?range=all" class="on"' in page
    assert "<script>" not in page.split("<main>")[1]
    assert '<svg id="delays"' in user_client.get(url, {"range": "1h"}).content.decode()
    HeightHistory.objects.update(judged_at=timezone.now() - timedelta(days=3))
    assert (
        "No judged heights for this validator in the last 1d" in user_client.get(url, {"range": "1d"}).content.decode()
    )
    assert '<svg id="proposals"' in user_client.get(url, {"range": "7d"}).content.decode()
