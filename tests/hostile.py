"""A hostile CometBFT endpoint for the trust-boundary tests: it speaks just enough HTTP and websocket
by hand (on a raw asyncio socket) to send what no honest node would: forged heights, frames that
announce hundreds of megabytes, replies dripped a byte at a time, hostile text, malformed JSON.

    node = HostileNode().start()
    node.status_height = lambda: 100              # what /status reports
    node.ws_script = lambda ws: ws.send(text)     # what each websocket connection gets
    node.routes["/validators"] = ("200", body)    # any other HTTP reply
    ...
    node.stop()

Everything is served on 127.0.0.1; each test starts its own node and stops it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from consensus.ingest import StreamConsumer
from consensus.models import Chain
from consensus.protocol import encode
from consensus.protocol.values import NewRound, Vote
from consensus.subscriber import Options

from .subscriberhelpers import FAST

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame_header(length: int, opcode: int = 0x1, fin: bool = True) -> bytes:
    """A server-to-client frame header (unmasked) announcing `length` bytes of payload."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes([first, length])
    if length < 1 << 16:
        return bytes([first, 126]) + struct.pack("!H", length)
    return bytes([first, 127]) + struct.pack("!Q", length)


def new_round(height: int, round_: int = 0) -> str:
    return encode.new_round_frame(NewRound(height, round_, "A" * 40, 0), 0)


def vote(height: int, address: str = "A" * 40, index: int = 0, round_: int = 0, vote_type: int = 2) -> str:
    v = Vote(height, round_, vote_type, b"\x01" * 32, datetime.now(UTC), address, index, b"\x02" * 64)
    return encode.vote_frame(v, 2)


class WS:
    """One websocket connection, as the script sees it."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def send(self, text: str) -> None:
        data = text.encode()
        self.writer.write(frame_header(len(data)) + data)
        await self.writer.drain()

    async def raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def drip(self, data: bytes, per_byte: float) -> None:
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(per_byte)

    async def pings(self, every: float, seconds: float) -> None:
        """Empty pings, one every `every` seconds (a client answers each; no message ever comes)."""
        end = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < end:
            await self.raw(frame_header(0, opcode=0x9))
            await asyncio.sleep(every)

    async def flood(self, total: int, chunk: int = 1 << 20) -> None:
        """Announce a text frame of `total` bytes and send them (as fast as the client reads)."""
        await self.raw(frame_header(total))
        block = b"x" * chunk
        sent = 0
        while sent < total:
            n = min(chunk, total - sent)
            await self.raw(block[:n])
            sent += n


class HostileNode:
    def __init__(self, chain_id: str = "hostile-1") -> None:
        self.chain_id = chain_id
        self.started_at = time.time()
        # /status: a chain that advances one height a second from 100, unless told otherwise.
        self.status_height: Callable[[], int] = lambda: 100 + int(time.time() - self.started_at)
        self.status_drip: float = 0.0  # seconds per byte of the /status reply (0 = all at once)
        self.ws_script: Callable[[WS], Awaitable[None]] | None = None
        self.routes: dict[str, tuple[str, bytes]] = {}  # path -> (status line code, body)
        # path -> a function of the query string's parameters giving (status line code, body)
        self.handlers: dict[str, Callable[[dict[str, str]], tuple[str, bytes]]] = {}
        self.drip: dict[str, float] = {}  # path -> seconds per byte
        self.connections = 0
        self.requests: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="hostile-node", daemon=True)
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HostileNode:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        fut.result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            if self._server:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def status_body(self) -> bytes:
        now = datetime.now(UTC)
        return encode.status_reply(
            chain_id=self.chain_id,
            moniker="hostile",
            node_id="0" * 40,
            listen_port=self.port,
            latest_hash=b"\x03" * 32,
            latest_height=self.status_height(),
            latest_time=now,
            earliest_hash=b"\x04" * 32,
            earliest_time=now,
            validator=None,
        ).encode()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task:
            self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            target = request_line.split(" ")[1]
            path, _, query = target.partition("?")
            self.requests.append(request_line)
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
            # Routes match the end of the path: an endpoint URL may carry a prefix (an API key).
            if path.endswith("/websocket") and "sec-websocket-key" in headers:
                await self._websocket(reader, writer, headers["sec-websocket-key"])
            else:
                await self._http(writer, path, dict(parse_qsl(query)))
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            if task:
                self._tasks.discard(task)

    async def _http(self, writer: asyncio.StreamWriter, path: str, query: dict[str, str]) -> None:
        route = next((r for r in self.routes if path.endswith(r)), None)
        handler = next((h for r, h in self.handlers.items() if path.endswith(r)), None)
        if handler is not None:
            (code, body), drip = handler(query), 0.0
        elif path.endswith("/status"):
            code, body, drip = "200 OK", self.status_body(), self.status_drip
        elif route is not None:
            code, body = self.routes[route]
            drip = self.drip.get(route, 0.0)
        else:
            code, body, drip = "404 Not Found", b"not found", 0.0
        reply = (
            f"HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body
        if drip:
            await WS(writer).drip(reply, drip)
        else:
            writer.write(reply)
            await writer.drain()

    async def _websocket(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
        accept = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()  # noqa: S324 - the RFC's
        writer.write(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        self.connections += 1
        drain = asyncio.ensure_future(self._discard(reader))  # the client's subscribe requests
        try:
            ws = WS(writer)
            if self.ws_script:
                await self.ws_script(ws)
            await asyncio.sleep(3600)  # then stay open and silent until stopped
        finally:
            drain.cancel()

    @staticmethod
    async def _discard(reader: asyncio.StreamReader) -> None:
        while await reader.read(65536):
            pass


# Subscriber options against a hostile node: a message must arrive whole within a second.
HOSTILE = Options(**{**FAST.__dict__, "message_deadline": 1.0})


def store(client, *names: str) -> None:
    """Everything in the streams of `names` into PostgreSQL (a real consumer, until idle)."""
    chains = [Chain.objects.get_or_create(name=n)[0] for n in names]
    StreamConsumer(chains, client=client, consumer="t", block_ms=100).run(idle_exit=True, pipelined=False)
