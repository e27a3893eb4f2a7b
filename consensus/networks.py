"""`--networks name,url[,name,url...]`, the original ctop's syntax, and the chains it names.

URLs may be tcp://, http://, https://, ws:// or wss://, with or without /websocket; they are kept
as the HTTP base URL (http://host:port), from which the websocket URL is derived. A name given
twice gets several endpoints, in the order given (the first is preferred, the others are failovers).
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.management.base import CommandError
from django.db import transaction

from .models import Chain, Endpoint

log = logging.getLogger("ctop")

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)
_SCHEMES = {"tcp": "http", "http": "http", "https": "https", "ws": "http", "wss": "https"}


class NetworksError(ValueError):
    """A --networks value that cannot be used; the message says why, for the command line."""


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    urls: tuple[str, ...]


def normalize_url(raw: str) -> str:
    """tcp://host:26657 -> http://host:26657 ; wss://host/websocket -> https://host ; ..."""
    text = raw.strip()
    if "://" not in text:
        raise NetworksError(f"{raw!r} is not a URL: give a scheme, e.g. tcp://{text or 'host'}:26657")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise NetworksError(f"{raw!r} is not a valid URL: {exc}") from None
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise NetworksError(f"{raw!r}: unsupported scheme {parts.scheme!r} (use tcp, http, https, ws or wss)")
    if not parts.hostname:
        raise NetworksError(f"{raw!r}: no host")
    if parts.query or parts.fragment:
        raise NetworksError(f"{raw!r}: a query or fragment is not allowed in an RPC URL")
    path = parts.path.rstrip("/")
    for suffix in ("/v1/websocket", "/websocket"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    netloc = f"{host}:{port}" if port else host
    if parts.username or parts.password:
        netloc = parts.netloc.rsplit("@", 1)[0] + "@" + netloc
    return f"{scheme}://{netloc}{path}"


def websocket_url(http_url: str) -> str:
    return (
        "wss://" + http_url[len("https://") :]
        if http_url.startswith("https://")
        else "ws://" + http_url[len("http://") :]
    ) + "/websocket"


def parse_networks(value: str) -> list[NetworkSpec]:
    """Parse `name,url,name,url,...`; raise NetworksError with an operator-readable message."""
    items = [item.strip() for item in value.split(",")]
    if value.strip() == "":
        raise NetworksError("--networks is empty: give name,url pairs, e.g. osmosis,tcp://127.0.0.1:26657")
    if len(items) % 2:
        raise NetworksError(
            f"--networks needs name,url pairs but got {len(items)} items ({value!r}); "
            "e.g. osmosis,tcp://host:26657,juno,https://host2"
        )
    specs: dict[str, list[str]] = {}
    for i in range(0, len(items), 2):
        name, url = items[i], items[i + 1]
        if not name:
            raise NetworksError(f"--networks: empty network name before {url!r}")
        if not _NAME.match(name):
            raise NetworksError(f"--networks: bad network name {name!r} (letters, digits, - and _ only)")
        normalized = normalize_url(url)
        urls = specs.setdefault(name.lower(), [])
        if normalized not in urls:
            urls.append(normalized)
    return [NetworkSpec(name, tuple(urls)) for name, urls in specs.items()]


def parse_names(value: str) -> list[str]:
    """`--networks osmosis,juno` (names only, for commands that read chains from the database)."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise NetworksError(f"--networks: bad network name(s) {', '.join(map(repr, bad))}")
    return names


@transaction.atomic
def ensure_chains(specs: list[NetworkSpec]) -> list[Chain]:
    """Create the named chains (enabled) and their endpoints; endpoints named on the command line
    come first, in the order given. Existing endpoints stay as failovers after them."""
    chains = []
    for spec in specs:
        chain, _ = Chain.objects.get_or_create(name=spec.name)
        existing = {e.url: e for e in chain.endpoints.all()}
        for priority, url in enumerate(spec.urls):
            endpoint = existing.get(url)
            if endpoint is None:
                Endpoint.objects.create(chain=chain, url=url, priority=priority)
            elif endpoint.priority != priority or not endpoint.enabled:
                endpoint.priority, endpoint.enabled = priority, True
                endpoint.save(update_fields=["priority", "enabled"])
        for offset, endpoint in enumerate(e for url, e in existing.items() if url not in spec.urls):
            if endpoint.priority < len(spec.urls):
                endpoint.priority = len(spec.urls) + offset
                endpoint.save(update_fields=["priority"])
        chains.append(chain)
    return chains


class ChainWatch:
    """The chains a long-running command works on, looked up again on every call, so chains the
    subscriber registers later, or an admin adds, are picked up without a restart.

    networks: "" (every enabled chain), chain names, or the original's name,url pairs (with_urls:
    the chains and endpoints are created on the first call). The syntax is checked at once
    (NetworksError): a bad list can never become valid. Names not known yet are waited for; the
    first call that finds one missing says so once in the log."""

    def __init__(self, networks: str = "", *, with_urls: bool = False) -> None:
        self.specs = parse_networks(networks) if with_urls and networks.strip() else None
        self.names = [sp.name for sp in self.specs] if self.specs else parse_names(networks)
        self._ensured = False
        self._waiting_for: tuple[str, ...] | None = None

    def current(self) -> list[Chain]:
        if self.specs and not self._ensured:
            ensure_chains(self.specs)
            self._ensured = True
        if not self.names:
            chains = list(Chain.objects.filter(enabled=True).order_by("name"))
            missing: tuple[str, ...] = () if chains else ("any chain",)
        else:
            found = {c.name: c for c in Chain.objects.filter(name__in=self.names)}
            chains = [found[n] for n in self.names if n in found]
            missing = tuple(n for n in self.names if n not in found)
        if missing and missing != self._waiting_for:
            log.warning(
                "waiting for %s: add %s with subscribe_events --networks name,url or in the admin",
                ", ".join(missing),
                "one" if missing == ("any chain",) else "them",
            )
        elif not missing and self._waiting_for:
            log.info("every chain asked for is known now")
        self._waiting_for = missing or None
        return chains

    def describe(self) -> str:
        return ", ".join(self.names) if self.names else "every enabled chain"


def chain_watch(networks: str, *, with_urls: bool = False) -> ChainWatch:
    """For commands: a ChainWatch, or exit status 2 for a --networks list that can never become
    valid (bad syntax, a bad name, a bad URL)."""
    try:
        return ChainWatch(networks, with_urls=with_urls)
    except NetworksError as exc:
        raise CommandError(str(exc), returncode=2) from None


def wait_for_chains(watch: ChainWatch, stop: threading.Event, *, every: float = 5.0) -> list:
    """The watch's chains, waiting (and saying so once) while there are none. [] if stopped first."""
    while not stop.is_set():
        chains = watch.current()
        if chains:
            return chains
        stop.wait(every)
    return []
