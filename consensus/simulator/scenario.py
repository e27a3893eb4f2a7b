"""What the simulated chain goes through: outages, nil voters, halts, set changes, bad frames.

Windows are inclusive height ranges. A window with `every` repeats: heights start + k*every ...
start + k*every + length - 1 (for a validator that keeps dropping out and coming back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Window:
    validator: int  # index in the genesis validator list (not the power-sorted position)
    start: int
    end: int  # inclusive; for a repeating window, start + length - 1
    every: int = 0  # repeat period in heights; 0 = once

    def covers(self, height: int) -> bool:
        if self.every <= 0:
            return self.start <= height <= self.end
        if height < self.start:
            return False
        return (height - self.start) % self.every <= self.end - self.start


@dataclass(frozen=True)
class Halt:
    """At `height`, validators `offline` stop (more than 1/3 of power: the chain halts) and come
    back `seconds` later; the height then commits in the next round, like the real recovery."""

    height: int
    seconds: float
    offline: tuple[int, ...]


@dataclass(frozen=True)
class SetChange:
    """From `height` on, genesis validator `validator` has `power` (0 = leaves; a new index joins)."""

    height: int
    validator: int
    power: int


@dataclass(frozen=True)
class Stall:
    """The chain makes no progress for `seconds` before starting `height` (no events, stale /status)."""

    height: int
    seconds: float


@dataclass(frozen=True)
class LateVotes:
    """Validator `validator`'s votes reach the node late, `from_ms` at height `start` growing linearly
    to `to_ms` at `end` (and staying there; with `every`, starting over every `every` heights): a
    validator slowing down before it misses."""

    validator: int
    start: int
    end: int
    from_ms: float
    to_ms: float
    every: int = 0

    def delay(self, height: int) -> float | None:
        """Seconds, or None outside the window."""
        if height < self.start:
            return None
        phase = (height - self.start) % self.every if self.every > 0 else height - self.start
        share = min(1.0, phase / max(1, self.end - self.start))
        return (self.from_ms + (self.to_ms - self.from_ms) * share) / 1000


@dataclass(frozen=True)
class FailedProposals:
    """Validator `validator` fails to propose on every `every`-th of its turns from `start` (online and
    voting all along: only its proposal never arrives, so the round times out into the next)."""

    validator: int
    every: int = 3
    start: int = 1


@dataclass(frozen=True)
class EmptyBlocks:
    """Validator `validator`'s blocks carry no transactions from height `start` on (the other
    proposers' blocks carry some, as on a chain with traffic)."""

    validator: int
    start: int = 1


@dataclass(frozen=True)
class Slashing:
    """The chain's downtime rule, served by the simulator's REST API: of every `window` blocks a
    validator must sign `min_signed`, or it is jailed for `jail_seconds` (the simulator then
    unjails it once that time has passed and it signs again, as its operator would)."""

    window: int = 100
    min_signed: float = 0.5
    jail_seconds: float = 600.0


@dataclass
class Scenario:
    offline: list[Window] = field(default_factory=list)
    nil_votes: list[Window] = field(default_factory=list)
    late_precommits: list[Window] = field(default_factory=list)
    halts: list[Halt] = field(default_factory=list)
    set_changes: list[SetChange] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    late_votes: list[LateVotes] = field(default_factory=list)
    failed_proposals: list[FailedProposals] = field(default_factory=list)
    empty_blocks: list[EmptyBlocks] = field(default_factory=list)
    slashing: Slashing = field(default_factory=Slashing)
    monikers: dict[int, str] = field(default_factory=dict)  # genesis index -> moniker (default: sim-validator-<i>)
    # Connection-level trouble, applied by every node of the chain.
    drop_connections_every: float = 0.0  # seconds; 0 = never
    malformed_every: int = 0  # every Nth event frame is followed by a malformed one; 0 = never

    def is_offline(self, validator: int, height: int) -> bool:
        return any(w.validator == validator and w.covers(height) for w in self.offline)

    def votes_nil(self, validator: int, height: int) -> bool:
        return any(w.validator == validator and w.covers(height) for w in self.nil_votes)

    def precommits_late(self, validator: int, height: int) -> bool:
        return any(w.validator == validator and w.covers(height) for w in self.late_precommits)

    def vote_delay(self, validator: int, height: int) -> float | None:
        return next((d for w in self.late_votes if w.validator == validator and (d := w.delay(height))), None)

    def fails_proposal(self, validator: int, height: int, turn: int) -> bool:
        """`turn`: how many turns the validator has had so far (the simulator's round robin)."""
        return any(
            f.validator == validator and height >= f.start and f.every > 0 and turn % f.every == f.every - 1
            for f in self.failed_proposals
        )

    def proposes_empty(self, validator: int, height: int) -> bool:
        return any(e.validator == validator and height >= e.start for e in self.empty_blocks)

    def halt_at(self, height: int) -> Halt | None:
        return next((h for h in self.halts if h.height == height), None)

    def stall_before(self, height: int) -> Stall | None:
        return next((s for s in self.stalls if s.height == height), None)

    @classmethod
    def from_dict(cls, doc: dict) -> Scenario:
        def windows(key: str) -> list[Window]:
            return [Window(**w) for w in doc.get(key, [])]

        return cls(
            offline=windows("offline"),
            nil_votes=windows("nil_votes"),
            late_precommits=windows("late_precommits"),
            halts=[Halt(h["height"], h["seconds"], tuple(h["offline"])) for h in doc.get("halts", [])],
            set_changes=[SetChange(**c) for c in doc.get("set_changes", [])],
            stalls=[Stall(**s) for s in doc.get("stalls", [])],
            late_votes=[LateVotes(**w) for w in doc.get("late_votes", [])],
            failed_proposals=[FailedProposals(**f) for f in doc.get("failed_proposals", [])],
            empty_blocks=[EmptyBlocks(**e) for e in doc.get("empty_blocks", [])],
            slashing=Slashing(**doc.get("slashing", {})),
            monikers={int(k): str(v) for k, v in doc.get("monikers", {}).items()},
            drop_connections_every=float(doc.get("drop_connections_every", 0)),
            malformed_every=int(doc.get("malformed_every", 0)),
        )


def demo() -> Scenario:
    """The main job's default: something worth seeing within a minute.

    Validator 2 drops out for 12 heights in every 60 (from height 15) and comes back; while it is
    out, the heights it should propose take two rounds. Validator 3 votes nil now and then.
    Validator 0's votes arrive later and later (300 ms growing to 800 ms over 60 heights from height
    10, again every 120): a slow-validator alert within two minutes. The chain's downtime rule is
    strict (10 misses allowed in 20 blocks): validator 2's jail risk climbs while it is out, and its
    eleventh miss in a row jails it, until it is back and the jail time has passed.
    """
    return Scenario(
        offline=[Window(validator=2, start=15, end=26, every=60)],
        nil_votes=[Window(validator=3, start=40, end=41, every=60)],
        late_precommits=[Window(validator=1, start=7, end=7, every=10)],
        late_votes=[LateVotes(validator=0, start=10, end=70, from_ms=300, to_ms=800, every=120)],
        slashing=Slashing(window=20, min_signed=0.5, jail_seconds=20),
    )


PRESETS = {"none": Scenario, "demo": demo}


def load(spec: str) -> Scenario:
    """A preset name (none, demo) or the path of a JSON file with the fields of Scenario."""
    if spec in PRESETS:
        return PRESETS[spec]()
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"unknown scenario {spec!r}: use one of {', '.join(PRESETS)} or a JSON file path")
    try:
        return Scenario.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"scenario file {path}: {exc}") from exc
