"""Stream entries into rows for PostgreSQL, through the one protocol module.

Undecodable entries and frames become dead letters with their reason; nothing raises out of here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consensus import protocol as p
from consensus.protocol.stream import (
    KIND_BLOCK,
    KIND_FRAME,
    KIND_FRAMES,
    KIND_GAP,
    KIND_STATUS,
    StreamEntry,
    decode_entry,
    entry_frames,
)
from consensus.protocol.websocket import fast_vote_frame


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


@dataclass
class Batch:
    """Rows decoded from a batch of stream entries, keyed by chain id (addresses not yet resolved)."""

    # (chain_id, height, round, type, address, validator_index, block_hash, timestamp, received_at, signature)
    votes: list[tuple] = field(default_factory=list)
    # (chain_id, height, round) -> [started_at, proposer_address, proposer_index, block_hash]
    rounds: dict[tuple[int, int, int], list] = field(default_factory=dict)
    # (chain_id, height, round, step) -> seen_at
    steps: dict[tuple[int, int, int, int], datetime] = field(default_factory=dict)
    # (chain_id, height, validator_index) -> (round, flag, address or "", timestamp)
    commit_sigs: dict[tuple[int, int, int], tuple] = field(default_factory=dict)
    # (chain_id, from, to) -> (reason, detected_at, backfilled_at)
    gaps: dict[tuple[int, int, int], tuple] = field(default_factory=dict)
    # chain_id -> (state, endpoint, reason, height, updated_at), the latest only
    statuses: dict[int, tuple] = field(default_factory=dict)
    # (chain_id or None, stream, entry_id, frame_index, payload, reason)
    dead: list[tuple] = field(default_factory=list)
    # chain_id -> (height, round) of the newest consensus event, for live pages
    newest: dict[int, tuple[int, int]] = field(default_factory=dict)

    def touch(self, chain_id: int, height: int, round_: int) -> None:
        if (height, round_) > self.newest.get(chain_id, (0, 0)):
            self.newest[chain_id] = (height, round_)

    def add_event(self, chain_id: int, event: object, received: datetime) -> None:
        if isinstance(event, p.Vote):
            self.votes.append(
                (
                    chain_id,
                    event.height,
                    event.round,
                    event.type,
                    event.validator_address,
                    event.validator_index,
                    event.block_hash,
                    event.timestamp,
                    received,
                    event.signature,
                )
            )
            self.touch(chain_id, event.height, event.round)
        elif isinstance(event, p.NewRound):
            row = self.rounds.setdefault((chain_id, event.height, event.round), [received, None, None, None])
            row[0] = min(row[0], received)
            row[1], row[2] = event.proposer_address, event.proposer_index
            self.touch(chain_id, event.height, event.round)
        elif isinstance(event, p.CompleteProposal):
            row = self.rounds.setdefault((chain_id, event.height, event.round), [received, None, None, None])
            row[3] = event.block_hash
        elif isinstance(event, p.RoundStep):
            key = (chain_id, event.height, event.round, event.step)
            self.steps[key] = min(self.steps.get(key, received), received)
            self.touch(chain_id, event.height, event.round)
        # Other event types (NewBlock, ValidatorSetUpdates) are not subscribed to; ignored if present.

    def add_commit(self, chain_id: int, commit: p.Commit) -> None:
        for index, sig in enumerate(commit.signatures):
            self.commit_sigs[(chain_id, commit.height, index)] = (
                commit.round,
                sig.flag,
                sig.validator_address,
                sig.timestamp,
            )


def decode_into(batch: Batch, stream: str, entry_id: bytes, fields: dict, chain_id: int, chain_name: str) -> None:
    """Decode one stream entry into `batch` (dead letters for what cannot be decoded)."""
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    try:
        entry: StreamEntry = decode_entry(fields)
    except p.ProtocolError as exc:
        raw = json.dumps({k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()})
        batch.dead.append((chain_id, stream, eid, 0, raw, f"bad stream entry: {exc}"))
        return
    if entry.chain != chain_name:
        batch.dead.append(
            (
                chain_id,
                stream,
                eid,
                0,
                entry.payload.decode(errors="replace"),
                f"entry names chain {entry.chain!r} but sits in the stream of {chain_name!r}",
            )
        )
        return
    received = _time(entry.received_ns)
    try:
        if entry.kind in (KIND_FRAME, KIND_FRAMES):
            for i, frame in enumerate(entry_frames(entry)):
                vote = fast_vote_frame(frame)  # most frames are votes: the short path first
                if vote is not None:
                    batch.votes.append(
                        (
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
                    batch.touch(chain_id, vote.height, vote.round)
                    continue
                try:
                    value = p.decode_frame(frame)
                except p.ProtocolError as exc:
                    batch.dead.append((chain_id, stream, eid, i, frame.decode(errors="replace"), str(exc)))
                    continue
                if not isinstance(value, p.SubscribeAck | p.RPCError):
                    batch.add_event(chain_id, value, received)
        elif entry.kind == KIND_BLOCK:
            block = p.decode_block(entry.payload)
            if block.last_commit is not None:
                batch.add_commit(chain_id, block.last_commit)
        elif entry.kind == KIND_GAP:
            doc = json.loads(entry.payload)
            start, end = int(doc["from"]), int(doc["to"])
            if start <= 0 or end < start:
                raise p.BadValue(f"gap {start}..{end} is not a height range")
            key = (chain_id, start, end)
            backfilled = received if doc.get("backfilled") else None
            old = batch.gaps.get(key)
            batch.gaps[key] = (str(doc.get("reason", ""))[:255], received, backfilled or (old[2] if old else None))
        elif entry.kind == KIND_STATUS:
            doc = json.loads(entry.payload)
            status = (
                str(doc.get("state", ""))[:32],
                str(doc.get("endpoint") or "")[:255],
                str(doc.get("reason") or ""),
                doc.get("height") if isinstance(doc.get("height"), int) else None,
                received,
            )
            if chain_id not in batch.statuses or batch.statuses[chain_id][4] <= received:
                batch.statuses[chain_id] = status
    except (p.ProtocolError, ValueError, KeyError, TypeError) as exc:
        batch.dead.append(
            (
                chain_id,
                stream,
                eid,
                0,
                entry.payload.decode(errors="replace")[:100_000],
                f"undecodable {entry.kind.decode()} entry: {exc}",
            )
        )
