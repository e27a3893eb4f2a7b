"""Stream entries into rows for PostgreSQL, through the one protocol module.

Undecodable entries and frames become dead letters with their reason; nothing raises out of here.
Every decoded event is checked against the plausible-height window its entry was received under
(consensus.plausible): an event outside it is refused as a dead letter, never stored, so no frame
can move a chain's latest height far ahead, whatever its text looked like to the subscriber.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from django.conf import settings

from common.text import one_line
from consensus import protocol as p
from consensus.protocol.stream import (
    KIND_BLOCK,
    KIND_COMMIT,
    KIND_FRAME,
    KIND_FRAMES,
    KIND_GAP,
    KIND_REFUSED,
    KIND_STATUS,
    GapReport,
    Refusal,
    StatusReport,
    StreamEntry,
    decode_entry,
    entry_frames,
)
from consensus.protocol.websocket import fast_vote_frame


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


class VoteRow(NamedTuple):
    """A vote as COPY writes it (the address is resolved to a validator id on the way)."""

    chain_id: int
    height: int
    round: int
    type: int
    address: str
    validator_index: int
    block_hash: bytes | None
    timestamp: datetime
    received_at: datetime
    signature: bytes | None


class DeadRow(NamedTuple):
    chain_id: int | None
    stream: str
    entry_id: str
    frame_index: int
    payload: str  # cut to the dead-letter bound
    length: int  # the original length, in characters
    reason: str


@dataclass(slots=True)
class RoundRow:
    """A round as stored: filled from NewRound (start, proposer) and CompleteProposal (block)."""

    started_at: datetime
    proposer_address: str | None = None
    proposer_index: int | None = None
    block_hash: bytes | None = None
    proposal_at: datetime | None = None  # when CompleteProposal arrived
    endpoint: str = ""  # redacted: the vantage point its votes are timed from


class CommitSigRow(NamedTuple):
    """One slot of a canonical commit (the address is empty for an absent slot)."""

    round: int
    flag: int
    address: str
    timestamp: datetime | None


class GapRow(NamedTuple):
    reason: str
    detected_at: datetime
    backfilled_at: datetime | None


class StatusRow(NamedTuple):
    """The subscriber's latest report on a chain."""

    state: str
    endpoint: str
    reason: str
    height: int | None
    updated_at: datetime
    interval: float | None  # seconds between its reports
    since: datetime | None  # since when the state holds, by the subscriber's reckoning


def dead_row(chain_id: int | None, stream: str, entry_id: str, index: int, payload: str, reason: str) -> DeadRow:
    limit = settings.CTOP["DEAD_LETTER_MAX_BYTES"]
    return DeadRow(chain_id, stream, entry_id, index, payload[:limit], len(payload), one_line(reason, 1000))


@dataclass
class Batch:
    """Rows decoded from a batch of stream entries, keyed by chain id (addresses not yet resolved)."""

    votes: list[VoteRow] = field(default_factory=list)
    # (chain_id, height, round) -> the round
    rounds: dict[tuple[int, int, int], RoundRow] = field(default_factory=dict)
    # (chain_id, height, round, step) -> seen_at
    steps: dict[tuple[int, int, int, int], datetime] = field(default_factory=dict)
    # (chain_id, height, validator_index) -> the slot
    commit_sigs: dict[tuple[int, int, int], CommitSigRow] = field(default_factory=dict)
    # (chain_id, from, to) -> the gap
    gaps: dict[tuple[int, int, int], GapRow] = field(default_factory=dict)
    # chain_id -> the latest report only
    statuses: dict[int, StatusRow] = field(default_factory=dict)
    dead: list[DeadRow] = field(default_factory=list)
    # chain_id -> (height, round) of the newest consensus event, for live pages
    newest: dict[int, tuple[int, int]] = field(default_factory=dict)

    def touch(self, chain_id: int, height: int, round_: int) -> None:
        if (height, round_) > self.newest.get(chain_id, (0, 0)):
            self.newest[chain_id] = (height, round_)

    def add_vote(self, chain_id: int, vote: p.Vote, received: datetime) -> None:
        self.votes.append(
            VoteRow(
                chain_id,
                vote.height,
                vote.round,
                vote.type,
                vote.validator_address,
                vote.validator_index,
                vote.block_hash,
                vote.timestamp,
                received,
                vote.signature,
            )
        )
        self.touch(chain_id, vote.height, vote.round)

    def add_event(self, chain_id: int, event: object, received: datetime, endpoint: str = "") -> None:
        if isinstance(event, p.Vote):
            self.add_vote(chain_id, event, received)
        elif isinstance(event, p.NewRound):
            row = self.rounds.setdefault((chain_id, event.height, event.round), RoundRow(received, endpoint=endpoint))
            row.started_at = min(row.started_at, received)
            row.proposer_address, row.proposer_index = event.proposer_address, event.proposer_index
            self.touch(chain_id, event.height, event.round)
        elif isinstance(event, p.CompleteProposal):
            row = self.rounds.setdefault((chain_id, event.height, event.round), RoundRow(received, endpoint=endpoint))
            row.block_hash = event.block_hash
            row.proposal_at = min(row.proposal_at or received, received)
        elif isinstance(event, p.RoundStep):
            key = (chain_id, event.height, event.round, event.step)
            self.steps[key] = min(self.steps.get(key, received), received)
            self.touch(chain_id, event.height, event.round)
        # Other event types (NewBlock, ValidatorSetUpdates) are not subscribed to; ignored if present.

    def add_commit(self, chain_id: int, commit: p.Commit) -> None:
        for index, sig in enumerate(commit.signatures):
            self.commit_sigs[(chain_id, commit.height, index)] = CommitSigRow(
                commit.round, sig.flag, sig.validator_address, sig.timestamp
            )


@dataclass
class _Entry:
    """One stream entry being decoded, with where it came from (for dead letters)."""

    batch: Batch
    chain_id: int
    stream: str
    entry_id: str
    entry: StreamEntry
    received: datetime

    def dead(self, index: int, payload: str, reason: str) -> None:
        self.batch.dead.append(dead_row(self.chain_id, self.stream, self.entry_id, index, payload, reason))

    def outside(self, height: int) -> str | None:
        """Why `height` is refused (outside the window the subscriber received it under), or None."""
        window = self.entry.window
        if window is not None and not window[0] <= height <= window[1]:
            return f"height {height} is outside the plausible heights {window[0]}..{window[1]}"
        return None

    def above(self, height: int) -> bool:
        return self.entry.window is not None and height > self.entry.window[1]


def _frames(e: _Entry) -> None:
    for i, frame in enumerate(entry_frames(e.entry)):
        vote = fast_vote_frame(frame)  # most frames are votes: the short path first
        if vote is None:
            try:
                value = p.decode_frame(frame)
            except p.ProtocolError as exc:
                e.dead(i, frame.decode(errors="replace"), str(exc))
                continue
            if isinstance(value, p.SubscribeAck | p.RPCError):
                continue
        else:
            value = vote
        height = getattr(value, "height", None)
        why = e.outside(height) if height is not None else None
        if why:
            e.dead(i, frame.decode(errors="replace"), f"refused: {why}")
        elif value is vote:
            e.batch.add_vote(e.chain_id, vote, e.received)
        else:
            e.batch.add_event(e.chain_id, value, e.received, e.entry.endpoint)


def _commit(e: _Entry, commit: p.Commit | None) -> None:
    if commit is None:
        return
    if commit.canonical is False:
        raise p.BadValue(f"the commit of height {commit.height} is not canonical")
    e.batch.add_commit(e.chain_id, commit)


def _block(e: _Entry) -> None:  # backfills written before /commit was used
    _commit(e, p.decode_block(e.entry.payload).last_commit)


def _commit_reply(e: _Entry) -> None:
    _commit(e, p.decode_commit(e.entry.payload))


def _gap(e: _Entry) -> None:
    gap = GapReport.decode(e.entry.payload)
    if e.above(gap.end):  # its start may be old (ctop was away): only the top is bounded
        raise p.BadValue(f"gap {gap.start}..{gap.end} ends above the plausible heights (up to {e.entry.window[1]})")
    key = (e.chain_id, gap.start, gap.end)
    old = e.batch.gaps.get(key)
    backfilled = e.received if gap.backfilled else (old.backfilled_at if old else None)
    e.batch.gaps[key] = GapRow(gap.reason, e.received, backfilled)


def _status(e: _Entry) -> None:
    report = StatusReport.decode(e.entry.payload)
    height = report.height
    if height is not None and e.above(height):
        height = None  # a status never carries a height the window refuses
    # Since when the subscriber has been watching (or blind), by its own reckoning: short reconnects
    # do not restart it. Never later than the report itself; absent from older subscribers.
    since = report.since_time()
    status = StatusRow(
        report.state,
        report.endpoint,
        report.reason,
        height,
        e.received,
        report.interval,
        min(since, e.received) if since is not None else None,
    )
    if e.chain_id not in e.batch.statuses or e.batch.statuses[e.chain_id].updated_at <= e.received:
        e.batch.statuses[e.chain_id] = status


def _refused(e: _Entry) -> None:
    refusal = Refusal.decode(e.entry.payload)
    row = dead_row(e.chain_id, e.stream, e.entry_id, 0, refusal.frame, f"refused by the subscriber: {refusal.reason}")
    e.batch.dead.append(row._replace(length=max(row.length, refusal.length)))


_HANDLERS = {
    KIND_FRAME: _frames,
    KIND_FRAMES: _frames,
    KIND_BLOCK: _block,
    KIND_COMMIT: _commit_reply,
    KIND_GAP: _gap,
    KIND_STATUS: _status,
    KIND_REFUSED: _refused,
}


def decode_into(batch: Batch, stream: str, entry_id: bytes, fields: dict, chain_id: int, chain_name: str) -> None:
    """Decode one stream entry into `batch` (dead letters for what cannot be decoded)."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    try:
        entry: StreamEntry = decode_entry(fields)
    except p.ProtocolError as exc:
        raw = json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        batch.dead.append(dead_row(chain_id, stream, eid, 0, raw, f"bad stream entry: {exc}"))
        return
    e = _Entry(batch, chain_id, stream, eid, entry, _time(entry.received_ns))
    if entry.chain != chain_name:
        e.dead(
            0,
            entry.payload.decode(errors="replace"),
            f"entry names chain {entry.chain!r:.80} but sits in the stream of {chain_name!r}",
        )
        return
    try:
        _HANDLERS[entry.kind](e)
    except (p.ProtocolError, ValueError, KeyError, TypeError, AttributeError) as exc:
        e.dead(0, entry.payload.decode(errors="replace"), f"undecodable {entry.kind.decode()} entry: {exc}")
