"""A small HTTP client for a node's JSON-RPC (GET), returning the protocol module's typed values."""

from __future__ import annotations

import requests

from . import protocol as p


class EndpointError(Exception):
    """The endpoint could not be asked (connection refused, timeout, HTTP error, undecodable reply)."""

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"{url}: {message}")
        self.url = url
        self.detail = message


class RPCClient:
    def __init__(self, url: str, timeout: float = 5.0, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def get_text(self, path: str, **params: object) -> str:
        try:
            response = self.session.get(f"{self.url}{path}", params=params or None, timeout=self.timeout)
        except requests.Timeout:
            raise EndpointError(self.url, f"{path}: timed out after {self.timeout:g}s") from None
        except requests.ConnectionError:
            raise EndpointError(self.url, f"{path}: cannot connect (refused, unreachable or reset)") from None
        except requests.RequestException as exc:
            raise EndpointError(self.url, f"{path}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500 and response.text.startswith("{"):
            return response.text  # a JSON-RPC error reply: the decoder raises it as RPCError
        if response.status_code != 200:
            raise EndpointError(self.url, f"{path}: HTTP {response.status_code}")
        return response.text

    def _call(self, decoder, path: str, **params: object):
        text = self.get_text(path, **params)
        try:
            return decoder(text)
        except p.RPCError:
            raise
        except p.ProtocolError as exc:
            raise EndpointError(self.url, f"{path}: undecodable reply: {exc}") from None

    def status(self) -> p.Status:
        return self._call(p.decode_status, "/status")

    def block(self, height: int | None = None) -> p.Block:
        return self._call(p.decode_block, "/block", **({"height": height} if height else {}))

    def commit(self, height: int) -> p.Commit:
        """The commit of `height`: canonical once height+1 is committed, else the node's seen commit."""
        return self._call(p.decode_commit, "/commit", height=height)

    def block_text(self, height: int) -> str:
        """The raw /block reply (the backfill stores it as received)."""
        return self.get_text("/block", height=height)

    def validators(self, height: int | None = None, page: int = 1, per_page: int = 100) -> p.ValidatorsPage:
        params: dict[str, object] = {"page": page, "per_page": per_page}
        if height:
            params["height"] = height
        return self._call(p.decode_validators, "/validators", **params)

    def close(self) -> None:
        self.session.close()
