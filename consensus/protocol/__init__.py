"""CometBFT's wire formats, decoded in one place into typed values.

Everything ctop reads from a node (websocket frames, HTTP replies) and every Redis Stream entry
goes through here; nothing else looks at raw JSON. Decoders raise only ProtocolError (and its
subclasses); websocket error replies are returned as RPCError values.
"""

from .blocks import decode_block, decode_blockchain, decode_commit
from .envelope import unwrap
from .errors import (
    BadValue,
    MalformedFrame,
    MissingField,
    ProtocolError,
    RPCError,
    RPCErrorKind,
    UnknownEventType,
)
from .http import decode_status, decode_validators
from .values import (
    FLAG_ABSENT,
    FLAG_COMMIT,
    FLAG_NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_NAMES,
    STEP_NUMBERS,
    Block,
    BlockMeta,
    Commit,
    CommitSig,
    CompleteProposal,
    Event,
    NewBlock,
    NewRound,
    RoundStep,
    Status,
    SubscribeAck,
    ValidatorInfo,
    ValidatorSetUpdates,
    ValidatorsPage,
    Vote,
)
from .websocket import EVENT_NAMES, QUERIES, Peek, decode_frame, peek_frame, subscribe_request, unsubscribe_all_request

__all__ = [
    "EVENT_NAMES",
    "FLAG_ABSENT",
    "FLAG_COMMIT",
    "FLAG_NIL",
    "PRECOMMIT",
    "PREVOTE",
    "QUERIES",
    "STEP_NAMES",
    "STEP_NUMBERS",
    "BadValue",
    "Block",
    "BlockMeta",
    "Commit",
    "CommitSig",
    "CompleteProposal",
    "Event",
    "MalformedFrame",
    "MissingField",
    "NewBlock",
    "NewRound",
    "Peek",
    "ProtocolError",
    "RPCError",
    "RPCErrorKind",
    "RoundStep",
    "Status",
    "SubscribeAck",
    "UnknownEventType",
    "ValidatorInfo",
    "ValidatorSetUpdates",
    "ValidatorsPage",
    "Vote",
    "decode_block",
    "decode_blockchain",
    "decode_commit",
    "decode_frame",
    "decode_status",
    "decode_validators",
    "peek_frame",
    "subscribe_request",
    "unsubscribe_all_request",
    "unwrap",
]
