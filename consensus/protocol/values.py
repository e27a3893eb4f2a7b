"""Typed values decoded from what a node sends. Plain frozen dataclasses: cheap, hashable, and
independent of Django, so the subscriber, the simulator and the tests share them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PREVOTE = 1
PRECOMMIT = 2

# RoundStepType names (events) and numbers (the protocol's enum).
STEP_NUMBERS = {
    "RoundStepNewHeight": 1,
    "RoundStepNewRound": 2,
    "RoundStepPropose": 3,
    "RoundStepPrevote": 4,
    "RoundStepPrevoteWait": 5,
    "RoundStepPrecommit": 6,
    "RoundStepPrecommitWait": 7,
    "RoundStepCommit": 8,
}
STEP_NAMES = {number: name for name, number in STEP_NUMBERS.items()}

# block_id_flag of commit signatures.
FLAG_ABSENT = 1
FLAG_COMMIT = 2
FLAG_NIL = 3


@dataclass(frozen=True, slots=True)
class SubscribeAck:
    """`{"result":{}}`: a subscribe/unsubscribe request succeeded."""

    request_id: int | str | None


@dataclass(frozen=True, slots=True)
class Vote:
    height: int
    round: int
    type: int  # PREVOTE or PRECOMMIT
    block_hash: bytes | None  # None: a vote for nil
    timestamp: datetime
    validator_address: str  # uppercase hex
    validator_index: int
    signature: bytes | None
    has_extension: bool = False

    @property
    def is_nil(self) -> bool:
        return self.block_hash is None


@dataclass(frozen=True, slots=True)
class NewRound:
    height: int
    round: int
    proposer_address: str | None  # absent on very old nodes
    proposer_index: int | None


@dataclass(frozen=True, slots=True)
class RoundStep:
    """NewRoundStep (and the other RoundState events: TimeoutPropose, Polka, ...)."""

    height: int
    round: int
    step: int  # STEP_NUMBERS value
    step_name: str


@dataclass(frozen=True, slots=True)
class CompleteProposal:
    height: int
    round: int
    block_hash: bytes | None
    step: int = 3  # the node's step when the proposal completed (Propose, or later if it came late)


@dataclass(frozen=True, slots=True)
class CommitSig:
    flag: int  # FLAG_ABSENT / FLAG_COMMIT / FLAG_NIL
    validator_address: str  # "" for absent slots
    timestamp: datetime | None  # None for absent slots (Go's zero time)
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class Commit:
    height: int
    round: int
    block_hash: bytes | None
    signatures: tuple[CommitSig, ...]
    canonical: bool | None = None  # only /commit says


@dataclass(frozen=True, slots=True)
class NewBlock:
    height: int
    time: datetime
    proposer_address: str
    block_hash: bytes | None  # absent before v0.38 (no block_id in the event)
    last_commit: Commit | None  # the commit of height - 1 (None at height 1)


@dataclass(frozen=True, slots=True)
class ValidatorUpdate:
    address: str
    pub_key_type: str
    pub_key: str
    voting_power: int  # 0 = leaving the set


@dataclass(frozen=True, slots=True)
class ValidatorSetUpdates:
    updates: tuple[ValidatorUpdate, ...]


@dataclass(frozen=True, slots=True)
class Status:
    chain_id: str
    node_version: str
    moniker: str
    latest_height: int
    latest_block_time: datetime
    earliest_height: int
    catching_up: bool


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    address: str
    pub_key_type: str
    pub_key: str  # base64
    voting_power: int
    proposer_priority: int


@dataclass(frozen=True, slots=True)
class ValidatorsPage:
    block_height: int
    validators: tuple[ValidatorInfo, ...]
    count: int
    total: int


@dataclass(frozen=True, slots=True)
class Block:
    height: int
    time: datetime
    chain_id: str
    proposer_address: str
    block_hash: bytes | None
    last_commit: Commit | None


@dataclass(frozen=True, slots=True)
class BlockMeta:
    """One block's header facts and size, as /blockchain lists them (no transactions, no commit)."""

    height: int
    time: datetime
    chain_id: str
    proposer_address: str
    num_txs: int
    block_size: int  # bytes
    block_hash: bytes | None = None  # block_id.hash, as the node says
    data_hash: bytes | None = None  # header.data_hash: the transactions' Merkle root
    header_hash: bytes | None = None  # the header's hash, recomputed (protocol.headers)


# What decode_frame may return for an event.
Event = Vote | NewRound | RoundStep | CompleteProposal | NewBlock | ValidatorSetUpdates
