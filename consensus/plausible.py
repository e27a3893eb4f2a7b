"""Which heights are plausible for a chain right now: the guard that keeps one lying or broken
endpoint from poisoning "the latest height" for good, or from passing for the best endpoint.

A frame's height is plausible when it lies within `margin` heights of the chain's *reference
height* (below: late votes, measured from ctop's own record too, so a reference a liar inflated
never locks honest frames out; above: the height in progress and status polls that lag the feed),
where the ceiling also grows with the time since the reference was read, at MAX_BLOCKS_PER_SECOND
(no CometBFT chain makes ten blocks a second, so an honest chain never outruns it).

The reference is the highest /status height that something else vouches for:
- it is within the ceiling of the previous reference, or
- another endpoint of the chain reports a height within `margin` of it, or
- ctop's own record (the highest height it accepted, with when) reaches it at the rate above.
With no reference and nothing to compare (the very first start), the lowest height among the
endpoints that are not catching up is taken: a liar can only inflate a height, never deflate one.
The reference follows the readings down as well as up, but never up faster than the rate: a liar
that keeps lying can run ahead no faster than ten blocks a second, and while it is away the
reference returns to what the others say.

A plausible reading can still be a lie within the margin. For choosing an endpoint ("is this one
lagging?") only *corroborated* readings count: another reading, or ctop's own record, agrees with
it within `agree` heights (plus the rate times the time between the readings). So one endpoint
claiming to be fifty heights ahead does not make the honest preferred endpoint look lagging.

The subscriber refuses frames outside the window, and stamps every stream entry with the window it
was received under, so stream_events refuses (dead-letters) any decoded event outside it too, even
one whose height the subscriber's quick peek did not see.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

MAX_BLOCKS_PER_SECOND = 10.0


@dataclass(frozen=True, slots=True)
class Window:
    floor: int
    ceiling: int

    def __contains__(self, height: int) -> bool:
        return self.floor <= height <= self.ceiling

    def describe(self) -> str:
        return f"{self.floor}..{self.ceiling}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One endpoint's /status: its latest height, whether it says it is catching up, and when it was
    read (clock; None: now)."""

    key: str
    height: int
    catching_up: bool = False
    at: float | None = None


class HeightReference:
    def __init__(
        self, margin: int = 100, max_rate: float = MAX_BLOCKS_PER_SECOND, clock=time.monotonic, agree: int = 5
    ) -> None:
        self.margin = margin
        self.max_rate = max_rate
        self.agree = agree
        self.clock = clock
        self.height: int | None = None  # the reference height
        self.read_at = 0.0  # when it was read (clock)
        self.record: tuple[int, float] | None = None  # ctop's own: (highest accepted height, when)
        # (height, when) the reference last moved freely: from here it may rise at most at the rate.
        self.anchor: tuple[int, float] | None = None

    def _ceiling(self, height: int, since: float, now: float) -> int:
        return height + self.margin + int(self.max_rate * max(now - since, 0.0))

    def window(self, now: float | None = None) -> Window | None:
        """The plausible heights now; None while nothing is known (no frame can be judged yet)."""
        if self.height is None:
            return None
        now = self.clock() if now is None else now
        low = min(self.height, self.record[0]) if self.record else self.height
        return Window(max(low - self.margin, 1), self._ceiling(self.height, self.read_at, now))

    def note_record(self, height: int, at: float | None = None) -> None:
        """ctop accepted events up to `height` (at `at`, default now): its own running record."""
        at = self.clock() if at is None else at
        if self.record is None or height >= self.record[0]:
            self.record = (height, at)

    def assess(
        self, readings: list[Reading], now: float | None = None, *, complete: bool = True
    ) -> tuple[set[str], set[str]]:
        """Take a round of /status readings; return (the keys of the implausible ones: heights
        nothing vouches for, the keys of the corroborated ones). The reference moves to the highest
        plausible reading, but up no faster than the rate.

        complete: every endpoint has answered (or failed) at least once. Until then a first reference
        is not guessed from the lowest reading: the liar may simply have answered first."""
        now = self.clock() if now is None else now
        live = [r for r in readings if not r.catching_up]

        def close(a: Reading, b: Reading, tolerance: int) -> bool:
            apart = abs((a.at if a.at is not None else now) - (b.at if b.at is not None else now))
            return abs(a.height - b.height) <= tolerance + self.max_rate * apart

        def by_record(r: Reading, tolerance: int) -> bool:
            if self.record is None:
                return False
            height, at = self.record
            return abs(r.height - height) <= tolerance + self.max_rate * abs((r.at or now) - at)

        plausible: list[Reading] = []
        for r in live:
            if (
                (self.height is not None and r.height <= self._ceiling(self.height, self.read_at, now))
                or any(o.key != r.key and close(o, r, self.margin) for o in live)
                or (self.record is not None and r.height <= self._ceiling(*self.record, now))
            ):
                plausible.append(r)
        if not plausible and live and complete and self.height is None and self.record is None:
            lowest = min(live, key=lambda r: r.height)
            plausible = [r for r in live if r.height <= lowest.height + self.margin]
        if plausible:
            best = max(r.height for r in plausible)
            line = self.anchor[0] + int(self.max_rate * max(now - self.anchor[1], 0.0)) if self.anchor else None
            if line is not None and best >= line:
                best = line  # capped: from the anchor, no faster than the rate, however often asked
            else:
                self.anchor = (best, now)
            self.height, self.read_at = best, now
        corroborated = {
            r.key
            for r in plausible
            if by_record(r, self.agree) or any(o.key != r.key and close(o, r, self.agree) for o in plausible)
        }
        vouched = {r.key for r in plausible}
        # A catching-up node is not used anyway (its verdict says so); it is not called a liar.
        return {r.key for r in live if r.key not in vouched}, corroborated

    def heal(self, now: float | None = None) -> bool:
        """Check ctop's own record (at start: the running maximum kept in Redis) against the window of
        the readings. A record beyond the ceiling (a value poisoned before this guard existed, or by a
        liar) is dropped and True returned: ctop then starts its record afresh."""
        window = self.window(now)
        if self.record is None or window is None or self.record[0] <= window.ceiling:
            return False
        self.record = None
        return True
