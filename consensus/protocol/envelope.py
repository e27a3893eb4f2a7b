"""The JSON-RPC 2.0 envelope every node message comes in, websocket frame or HTTP reply, and the
one rule for decoders: whatever goes wrong inside becomes a ProtocolError, never a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from . import fields as f
from .errors import MalformedFrame, ProtocolError, RPCError

T = TypeVar("T")

# What a decoder may trip over on input of the wrong shape, beyond the checks it makes itself.
_SURPRISES = (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError)


def loads(text: str | bytes) -> dict:
    """A JSON-RPC message as a dict (MalformedFrame if it is not JSON, or not an object)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedFrame(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise MalformedFrame(f"expected a JSON-RPC object, got {type(doc).__name__}")
    return doc


def error_of(doc: dict) -> RPCError | None:
    """The message's error reply as an RPCError value, or None if it carries no error."""
    if doc.get("error") is None:
        return None
    err = f.obj(doc["error"], "error")
    code = f.integer(err.get("code", 0), "error.code", lo=-(2**31), hi=2**31)
    message = err.get("message", "")
    data = err.get("data", "")
    if not isinstance(message, str):
        message = json.dumps(message)
    if not isinstance(data, str):
        data = json.dumps(data)
    request_id = doc.get("id")
    if not isinstance(request_id, int | str | type(None)) or isinstance(request_id, bool):
        request_id = None
    return RPCError(request_id, code, message, data)


def result_of(doc: dict) -> dict:
    """The message's `result` object; an error reply is raised as RPCError."""
    error = error_of(doc)
    if error is not None:
        raise error
    if "result" not in doc:
        raise MalformedFrame("neither result nor error in the JSON-RPC reply")
    return f.obj(doc["result"], "result")


def unwrap(body: str | bytes) -> dict:
    """The `result` of an HTTP JSON-RPC reply; an error reply is raised as RPCError."""
    return result_of(loads(body))


def guarded(what: str, decode: Callable[[Any], T], raw: Any) -> T:
    """decode(raw), with anything unexpected turned into a ProtocolError naming `what`."""
    try:
        return decode(raw)
    except ProtocolError:
        raise
    except _SURPRISES as exc:  # pragma: no cover - the decoders check shapes; this is the backstop
        raise MalformedFrame(f"undecodable {what}: {exc!r}") from None
