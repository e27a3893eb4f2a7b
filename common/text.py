"""Text that came from outside (a node's error message, a REST moniker, a URL with a key in it)
made safe to put in a log line, an alert summary, a page or a message.

Two rules, used everywhere such text is shown: remote text becomes one bounded line without
control characters (`one_line`), and a URL loses its credentials and path (`redact_url`). The full
URL of an endpoint is shown only to staff in the admin.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

# C0/C1 controls, DEL, and the Unicode line and paragraph separators: anything that could end a
# log line, a mail header or a chat message early.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]+")
_SPACES = re.compile(r"\s+")


def one_line(value: object, limit: int = 200) -> str:
    """`value` as one line of at most `limit` characters (cut with an ellipsis), control characters
    and bidirectional overrides replaced by a space."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]  # never run the regexes over megabytes
    text = _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
    if len(text) > limit:
        text = text[: max(limit - 1, 0)].rstrip() + "…"
    return text


def first_line(exc: BaseException) -> str:
    """An exception's first line (a database driver's message can span several), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def redact_url(url: str) -> str:
    """scheme://host[:port], with `***@` where credentials were and `/…` where a path was.

    Providers put API keys in the user-info (`https://user:key@rpc...`) or in the path
    (`https://rpc.provider.io/<key>`), and Redis URLs carry passwords (`redis://:pw@host/0`); none of
    that may reach a log, a page or a notification. The database number of a Redis URL is kept.
    """
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    if not parts.scheme or not host:
        return "<unparseable URL>"
    host = f"[{host}]" if ":" in host else host
    creds = "***@" if (parts.username or parts.password) else ""
    path = parts.path.rstrip("/")
    if parts.scheme.startswith("redis") and path[1:].isdigit():
        tail = path  # /0: the Redis database number, not a secret
    elif path or parts.query:
        tail = "/…"
    else:
        tail = ""
    return f"{parts.scheme}://{creds}{host}{f':{port}' if port else ''}{tail}"
