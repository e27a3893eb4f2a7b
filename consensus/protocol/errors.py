"""The protocol module's one error family. Anything wrong with what a node sent is a ProtocolError
(or a subclass); nothing else escapes the decoders, whatever the input."""

from __future__ import annotations

import enum

from common.text import one_line


class ProtocolError(ValueError):
    """What a node sent cannot be understood. The message says what and where, for an operator."""


class MalformedFrame(ProtocolError):
    """Not JSON, or not the JSON-RPC envelope CometBFT sends."""


class MissingField(ProtocolError):
    """A field the event type always carries is absent."""


class BadValue(ProtocolError):
    """A field has the wrong type or an absurd value (negative height, round beyond any timeout...)."""


class UnknownEventType(ProtocolError):
    """An event type ctop does not decode (e.g. one it never subscribed to)."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


class RPCErrorKind(enum.Enum):
    SUBSCRIPTION_CANCELLED = "subscription cancelled"
    SUBSCRIPTION_LIMIT = "subscription limit reached"
    ALREADY_SUBSCRIBED = "already subscribed"
    SUBSCRIPTION_NOT_FOUND = "subscription not found"
    BAD_QUERY = "query rejected"
    METHOD_NOT_FOUND = "method not found"
    PAGE_OUT_OF_RANGE = "page out of range"
    HEIGHT_UNAVAILABLE = "height not available"
    OTHER = "error"


def classify_rpc_error(code: int, message: str, data: str) -> RPCErrorKind:
    text = f"{message} {data}".lower()
    if "subscription was cancel" in text:  # "canceled" (v0.38+) and "cancelled" (v0.34)
        return RPCErrorKind.SUBSCRIPTION_CANCELLED
    if "max_subscriptions_per_client" in text or "max_subscription_clients" in text:
        return RPCErrorKind.SUBSCRIPTION_LIMIT
    if "already subscribed" in text:
        return RPCErrorKind.ALREADY_SUBSCRIBED
    if "subscription not found" in text:
        return RPCErrorKind.SUBSCRIPTION_NOT_FOUND
    if "failed to parse query" in text:
        return RPCErrorKind.BAD_QUERY
    if code == -32601:
        return RPCErrorKind.METHOD_NOT_FOUND
    if "page should be within" in text:
        return RPCErrorKind.PAGE_OUT_OF_RANGE
    if "height" in text and (
        "must be less than or equal" in text or "not available" in text or "lowest height" in text
    ):
        return RPCErrorKind.HEIGHT_UNAVAILABLE
    return RPCErrorKind.OTHER


class RPCError(ProtocolError):
    """A JSON-RPC error reply. On the websocket it is returned as a value (the subscriber decides
    what to do); the HTTP helpers raise it."""

    def __init__(self, request_id: int | str | None, code: int, message: str, data: str = "") -> None:
        self.request_id = request_id
        self.code = code
        self.message = message
        self.data = data
        self.kind = classify_rpc_error(code, message, data)
        # The node's own words, made one bounded line: they reach logs, statuses and alert summaries.
        detail = one_line(message, 200) + (": " + one_line(data, 300) if data else "")
        super().__init__(f"RPC error {code} ({self.kind.value}): {detail}")

    @property
    def reason(self) -> str:
        """For a cancelled subscription, the node's reason ("CometBFT exited", "... out of capacity")."""
        text = self.data or self.message
        marker = "(reason: "
        if marker in text:
            return text.split(marker, 1)[1].rstrip(")")
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RPCError) and (self.request_id, self.code, self.message, self.data) == (
            other.request_id,
            other.code,
            other.message,
            other.data,
        )

    def __hash__(self) -> int:
        return hash((self.request_id, self.code, self.message, self.data))
