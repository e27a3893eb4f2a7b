"""The validator page's time charts (README "Pages"), as plain numbers for the template.

No database and no HTML here: analysis.timeline reads a bounded, evenly sampled set of heights;
this module puts them in time buckets, computes each bucket's figures and lays out the SVG geometry
(the template draws it, and Django escapes every label and tooltip on the way out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from .latency import UNIT_MS, percentile

MINUTE, HOUR, DAY, WEEK = 60, 3600, 86400, 7 * 86400
# Bucket sizes, seconds. Sizes under a minute serve a short "all": 50 heights of 6 s span 5 minutes.
STEPS = (1, 2, 5, 10, 15, 30, *(m * MINUTE for m in (1, 2, 5, 15, 30)), *(h * HOUR for h in (1, 2, 3, 6, 12)))
STEPS += (DAY, WEEK, 4 * WEEK)
# x-axis label spacing may be wider than any bucket (a year has room for ~7 dates).
TICK_STEPS = (*STEPS, 8 * WEEK, 16 * WEEK, 52 * WEEK)
MAX_BUCKETS = 100
# On average at least two heights a bucket: a bucket of one height is a yes/no, not a share.
MIN_HEIGHTS_PER_BUCKET = 2
# The page's ranges, seconds back from now; "all": the validator's whole span in the history.
RANGES = {"1h": HOUR, "6h": 6 * HOUR, "1d": DAY, "7d": WEEK, "30d": 30 * DAY, "1y": 365 * DAY, "all": None}
DEFAULT_RANGE = "all"

# Geometry, in SVG user units (the template scales the whole chart down on a narrow screen).
WIDTH, HEIGHT = 720, 150
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 10, 22
DASH = "\u2013"  # an en dash, between the ends of a span
CHAR_PX = 6.7  # an 11 px monospace character: labels are spaced by their real width, never overlap


@dataclass
class HeightPoint:
    """One height read, as the charts need it (analysis.timeline decodes it)."""

    at: datetime  # judged_at
    missed: bool  # a missed prevote or precommit in any round
    delays: list[int]  # its vote delays, 10 ms units, in rounds whose proposal arrived
    turns: str | None  # its proposer turns here, one latency.turn_mark each; None: no timing kept


@dataclass
class Bucket:
    start: datetime
    end: datetime
    heights: int = 0  # heights read with the validator in the set
    missed: int = 0
    delays: list[int] = field(default_factory=list)
    timed: int = 0  # heights read with timing (round info) kept
    committed: int = 0
    lost: int = 0  # proposed, but the round did not commit
    absent: int = 0  # no proposal arrived

    @property
    def signed_share(self) -> float | None:
        return (self.heights - self.missed) / self.heights if self.heights else None

    def delay_ms(self, share: float) -> float | None:
        return percentile(sorted(self.delays), share) * UNIT_MS if self.delays else None

    @property
    def turns(self) -> int:
        return self.committed + self.lost + self.absent


def bucket_seconds(span: float, heights: int) -> int:
    """The smallest step giving at most MAX_BUCKETS buckets over `span` seconds and on average
    MIN_HEIGHTS_PER_BUCKET heights a bucket (the largest step if none does)."""
    limit = max(1, min(MAX_BUCKETS, heights // MIN_HEIGHTS_PER_BUCKET))
    return next((s for s in STEPS if math.ceil(span / s) <= limit), STEPS[-1])


def align(t: datetime, step: int, offset: int) -> datetime:
    """The start of the step holding t, on local multiples of `step` (`offset`: the local time's
    seconds east of UTC, fixed at the range's start), so a day starts at midnight, a week on Monday."""
    origin = 4 * DAY if step % WEEK == 0 else 0  # 1970-01-01 was a Thursday
    s = t.timestamp() + offset - origin
    return datetime.fromtimestamp(s - s % step - offset + origin, UTC)


def bucketize(points: list[HeightPoint], start: datetime, end: datetime, step: int, offset: int) -> list[Bucket]:
    """Every bucket from the one holding `start` to the one holding `end`, oldest first; a bucket
    no height fell in stays at zero heights (drawn as a gap, never as a zero)."""
    first = align(start, step, offset)
    count = max(1, math.ceil((end - first).total_seconds() / step))
    buckets = [
        Bucket(first + timedelta(seconds=i * step), first + timedelta(seconds=(i + 1) * step)) for i in range(count)
    ]
    for p in points:
        i = int((p.at - first).total_seconds() // step)
        if i == count and p.at <= end:  # `end` itself on a bucket boundary
            i -= 1
        if not 0 <= i < count:
            continue
        b = buckets[i]
        b.heights += 1
        b.missed += p.missed
        b.delays.extend(p.delays)
        if p.turns is not None:
            b.timed += 1
            b.committed += p.turns.count("C")
            b.lost += p.turns.count("P")
            b.absent += p.turns.count("-")
    return buckets


def nice_ticks(top: float, integer: bool = False, most: int = 4) -> list[float]:
    """0 and up to `most` round steps (1, 2, 5 x 10^k) covering `top`."""
    top = max(top, 1.0 if integer else 1e-9)
    raw = top / most
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def n_heights(n: int) -> str:
    return f"{n} height{'' if n == 1 else 's'}"


def time_label(t: datetime, step: int, span: float, tz: tzinfo) -> str:
    local = t.astimezone(tz)
    if step >= DAY:
        return local.strftime("%Y-%m-%d" if span >= 180 * DAY else "%m-%d")
    clock = local.strftime("%H:%M:%S" if step < MINUTE else "%H:%M")
    return f"{local:%m-%d} {clock}" if span > DAY else clock


def span_label(b: Bucket, step: int, span: float, tz: tzinfo) -> str:
    """A bucket's time span for its tooltip, "12:05" DASH "12:10", dated where the chart spans days."""
    start, end = b.start.astimezone(tz), b.end.astimezone(tz)
    if step >= DAY:
        last = (end - timedelta(days=1)).strftime("%Y-%m-%d")
        return start.strftime("%Y-%m-%d") + ("" if step == DAY else f"{DASH}{last}")
    clock = "%H:%M:%S" if step < MINUTE else "%H:%M"
    dated = f"{start:%Y-%m-%d} " if span > DAY or step >= HOUR else ""
    return f"{dated}{start.strftime(clock)}{DASH}{end.strftime(clock)}"


@dataclass
class Tick:
    pos: float
    label: str


@dataclass
class Mark:
    """A rect (x, y, w, h) or a dot (centre x, y); every one carries its tooltip."""

    x: float
    y: float
    css: str
    title: str
    w: float = 0.0
    h: float = 0.0


@dataclass
class Chart:
    id: str
    label: str  # what the chart shows, for its caption and screen readers
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    plot_w: int = WIDTH - LEFT - RIGHT
    plot_h: int = HEIGHT - TOP - BOTTOM
    yticks: list[Tick] = field(default_factory=list)
    xticks: list[Tick] = field(default_factory=list)
    bars: list[Mark] = field(default_factory=list)
    dots: list[Mark] = field(default_factory=list)
    lines: list[tuple[str, str]] = field(default_factory=list)  # (css class, "x,y x,y ...")
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, text)

    @property
    def bottom(self) -> int:
        return self.top + self.plot_h


class Frame:
    """Maps a bucket series onto a chart's plot area."""

    def __init__(self, buckets: list[Bucket], step: int, tz: tzinfo) -> None:
        self.buckets, self.step, self.tz = buckets, step, tz
        self.t0 = buckets[0].start
        self.span = (buckets[-1].end - self.t0).total_seconds()
        self.plot_w, self.plot_h = Chart.plot_w, Chart.plot_h
        self.bar_w = self.plot_w * step / self.span
        # A bar's width, less a hairline between bars that have room for one.
        self.w = round(self.bar_w - (1.0 if self.bar_w > 3 else 0.0), 2)

    def x(self, t: datetime) -> float:
        return round(LEFT + (t - self.t0).total_seconds() / self.span * self.plot_w, 1)

    def y(self, value: float, top: float) -> float:
        return round(TOP + self.plot_h * (1 - value / top), 1)

    def when(self, b: Bucket) -> str:
        return span_label(b, self.step, self.span, self.tz)

    def chart(self, id: str, label: str, ticks: list[float], fmt: str) -> Chart:
        c = Chart(id, label, yticks=[Tick(self.y(v, ticks[-1]), fmt.format(v)) for v in ticks])
        c.xticks = self.xticks()
        return c

    def xticks(self) -> list[Tick]:
        """Labels at round local times, as many as fit side by side."""
        end = self.buckets[-1].end
        for step in (s for s in TICK_STEPS if s >= self.step):
            chars = len(time_label(self.t0, step, self.span, self.tz))
            if self.span / step + 1 <= self.plot_w / (chars * CHAR_PX + 14):
                break
        offset = int(self.t0.astimezone(self.tz).utcoffset().total_seconds())
        t, ticks = align(self.t0, step, offset), []
        while t <= end:
            x = self.x(t)
            # Keep a label whole inside the chart: its half-width from either edge.
            half = len(time_label(t, step, self.span, self.tz)) * CHAR_PX / 2
            if t >= self.t0 and LEFT + half - 6 <= x <= WIDTH - half:
                ticks.append(Tick(x, time_label(t, step, self.span, self.tz)))
            t = align(t + timedelta(seconds=step * 1.5), step, offset)  # the next one
        return ticks


def participation_chart(f: Frame, sampled: bool) -> Chart:
    c = f.chart("participation", "heights without a missed vote, per bucket", [0, 25, 50, 75, 100], "{:.0f}%")
    read = " read" if sampled else ""
    for b in f.buckets:
        share = b.signed_share
        if share is None:
            continue
        css = "ok" if share >= 0.99 else "warn" if share >= 0.95 else "bad"
        title = f"{f.when(b)} · {100 * share:.1f}% without a miss · missed {b.missed} of {n_heights(b.heights)}{read}"
        y = f.y(100 * share, 100)
        # A bucket with every height missed keeps a hairline, so it reads as 0%, not as a gap.
        c.bars.append(Mark(f.x(b.start), min(y, c.bottom - 1), css, title, f.w, max(c.bottom - y, 1)))
    c.legend = [("ok", "≥ 99%"), ("warn", "≥ 95%"), ("bad", "below")]
    return c


def delay_chart(f: Frame) -> Chart:
    figures = [(b, b.delay_ms(0.5), b.delay_ms(0.95)) for b in f.buckets]
    ticks = nice_ticks(max([p95 for _, _, p95 in figures if p95 is not None] + [10.0]))
    c = f.chart("delays", "vote arrival delay from the proposal, p50 and p95 per bucket", ticks, "{:.0f} ms")
    runs: dict[str, list[list[str]]] = {"p95": [[]], "p50": [[]]}  # a line breaks at a bucket without votes
    for b, p50, p95 in figures:
        if p50 is None or p95 is None:
            for series in runs.values():
                series.append([])
            continue
        x = round(f.x(b.start) + f.bar_w / 2, 1)
        title = f"{f.when(b)} · p50 {p50:.0f} ms · p95 {p95:.0f} ms · {len(b.delays)} timed votes"
        for name, value in (("p95", p95), ("p50", p50)):
            y = f.y(value, ticks[-1])
            runs[name][-1].append(f"{x},{y}")
            c.dots.append(Mark(x, y, name, title))
    c.lines = [(name, " ".join(run)) for name, series in runs.items() for run in series if len(run) > 1]
    c.legend = [("p50", "p50"), ("p95", "p95")]
    return c


def proposal_chart(f: Frame, sampled: bool) -> Chart:
    top = max((b.turns for b in f.buckets), default=0)
    ticks = nice_ticks(max(top, 1), integer=True)
    c = f.chart("proposals", "its proposer turns per bucket", ticks, "{:.0f}")
    read = " read" if sampled else ""
    for b in f.buckets:
        if not b.timed:
            continue  # no timing kept for any height here: nothing is known, so nothing is drawn
        x, w = f.x(b.start), f.w
        if not b.turns:
            # Heights read and no turn among them: a dim hairline, told apart from a gap.
            c.bars.append(Mark(x, c.bottom - 2, "zero", f"{f.when(b)} · no turns in {n_heights(b.timed)}{read}", w, 2))
            continue
        title = (
            f"{f.when(b)} · {b.turns} turns: {b.committed} committed, {b.lost} proposed but round lost,"
            f" {b.absent} without a proposal ({n_heights(b.timed)}{read})"
        )
        base = 0
        for css, n in (("ok", b.committed), ("warn", b.lost), ("bad", b.absent)):
            if n:
                y = f.y(base + n, ticks[-1])
                c.bars.append(Mark(x, y, css, title, w, round(f.y(base, ticks[-1]) - y, 1)))
                base += n
    c.legend = [("ok", "committed"), ("warn", "proposed, round lost"), ("bad", "no proposal")]
    return c


def validator_charts(
    points: list[HeightPoint], start: datetime, end: datetime, tz: tzinfo, stride: int = 1
) -> tuple[int, list[Chart]]:
    """(bucket size in seconds, the three charts) of the heights read between start and end."""
    step = bucket_seconds((end - start).total_seconds(), len(points))
    offset = int(start.astimezone(tz).utcoffset().total_seconds())
    frame = Frame(bucketize(points, start, end, step, offset), step, tz)
    sampled = stride > 1
    return step, [participation_chart(frame, sampled), delay_chart(frame), proposal_chart(frame, sampled)]


def step_label(step: int) -> str:
    """ "30 seconds", "1 week": a bucket size for the page."""
    unit, name = next(
        (u, n)
        for u, n in ((WEEK, "week"), (DAY, "day"), (HOUR, "hour"), (MINUTE, "minute"), (1, "second"))
        if step % u == 0
    )
    return f"{step // unit} {name}{'s' if step // unit > 1 else ''}"
