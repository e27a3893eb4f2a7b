"""A small HTTP client for a node's JSON-RPC (GET), returning the protocol module's typed values.

Every call is bounded (common.http): a total deadline for the whole exchange and a reply size
limit, so a slow, dripping or enormous reply from an endpoint costs at most `deadline` seconds
and `max_bytes` of memory, and never more.
"""

from __future__ import annotations

from django.conf import settings

from common import http
from common.text import one_line, redact_url

from . import protocol as p


class EndpointError(Exception):
    """The endpoint could not be asked (refused, too slow, too big, HTTP error, undecodable reply).
    The message carries the URL redacted (no credentials, no path with a key in it)."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        self.detail = one_line(message, 300)
        super().__init__(f"{redact_url(url)}: {self.detail}")


def max_reply_bytes() -> int:
    return settings.CTOP["HTTP_MAX_BYTES"]


class RPCClient:
    def __init__(self, url: str, timeout: float = 5.0, *, max_bytes: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout  # the total deadline of one call, in seconds
        self.max_bytes = max_bytes or max_reply_bytes()

    def get_text(self, path: str, **params: object) -> str:
        try:
            response = http.get(
                f"{self.url}{path}", params=params or None, deadline=self.timeout, max_bytes=self.max_bytes
            )
        except http.HTTPError as exc:
            raise EndpointError(self.url, f"{path}: {exc.detail}") from None
        text = response.text
        if response.status >= 500 and text.startswith("{"):
            return text  # a JSON-RPC error reply: the decoder raises it as RPCError
        if response.status != 200:
            raise EndpointError(self.url, f"{path}: HTTP {response.status}")
        return text

    def _call(self, decoder, path: str, **params: object):
        text = self.get_text(path, **params)
        try:
            return decoder(text)
        except p.RPCError:
            raise  # the node answered with an error (its kind says which); callers decide
        except p.ProtocolError as exc:
            raise EndpointError(self.url, f"{path}: undecodable reply: {exc}") from None

    def status(self) -> p.Status:
        return self._call(p.decode_status, "/status")

    def block(self, height: int | None = None) -> p.Block:
        return self._call(p.decode_block, "/block", **({"height": height} if height else {}))

    def blockchain(self, lo: int, hi: int) -> tuple[int, list[p.BlockMeta]]:
        """Block metas of heights lo..hi (at most 20: the node's page), and the node's latest height."""
        return self._call(p.decode_blockchain, "/blockchain", minHeight=lo, maxHeight=hi)

    def commit(self, height: int) -> p.Commit:
        """The commit of `height`: canonical once height+1 is committed, else the node's seen commit."""
        return self._call(p.decode_commit, "/commit", height=height)

    def commit_text(self, height: int) -> str:
        """The raw /commit reply (the backfill stores it as received)."""
        return self.get_text("/commit", height=height)

    def validators(self, height: int | None = None, page: int = 1, per_page: int = 100) -> p.ValidatorsPage:
        params: dict[str, object] = {"page": page, "per_page": per_page}
        if height:
            params["height"] = height
        return self._call(p.decode_validators, "/validators", **params)

    def close(self) -> None:
        """Nothing to release (each call opens and closes its own connection); kept for callers."""
