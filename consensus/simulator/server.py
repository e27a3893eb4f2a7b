"""The simulator's network face: CometBFT's websocket and HTTP RPC, served by aiohttp on 127.0.0.1.

A SimNode is one RPC endpoint of a SimChain. Several nodes may serve one chain (failover tests):
each can lag (stall), drop its connections, report another chain-id, or send malformed frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta

from aiohttp import WSMsgType, web

from consensus.protocol import encode

from .chain import Emission, SimChain
from .http import HTTPRoutes
from .rest import RESTRoutes

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS = 5
QUEUE_LIMIT = 200_000  # frames buffered per connection before the node gives up on a slow client
_ID0 = '{"jsonrpc":"2.0","id":0'
_KNOWN_QUERIES = {
    "NewRound",
    "NewRoundStep",
    "Vote",
    "CompleteProposal",
    "NewBlock",
    "ValidatorSetUpdates",
    "Tx",
    "NewBlockHeader",
    "TimeoutPropose",
    "TimeoutWait",
    "Polka",
    "Lock",
    "Relock",
    "ValidBlock",
}


def event_body(em: Emission) -> str:
    """The frame for an event, without its leading `{"jsonrpc":"2.0","id":N` (per subscriber)."""
    q, e = em.query, em.event
    if q == "Vote":
        frame = encode.vote_frame(e, 0)
    elif q == "NewRound":
        frame = encode.new_round_frame(e, 0)
    elif q == "NewRoundStep":
        frame = encode.round_step_frame(e, 0)
    elif q == "CompleteProposal":
        frame = encode.complete_proposal_frame(e, 0)
    else:  # pragma: no cover - the chain only emits the four above
        raise ValueError(q)
    return frame[len(_ID0) :]


class Connection:
    def __init__(self, ws: web.WebSocketResponse, queue_limit: int = QUEUE_LIMIT) -> None:
        self.ws = ws
        self.subs: dict[str, int | str] = {}  # event name -> subscribe request id
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=queue_limit)
        self.sent = 0
        self.sent_frames: list[str] | None = None  # filled when the node records (tests)
        self.prefixes: dict[int | str, str] = {}

    def push(self, frame: str) -> bool:
        try:
            self.queue.put_nowait(frame)
            return True
        except asyncio.QueueFull:
            return False


class SimNode(HTTPRoutes, RESTRoutes):
    def __init__(
        self,
        chain: SimChain,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        moniker: str = "sim",
        chain_id: str | None = None,
    ) -> None:
        self.chain = chain
        self.host = host
        self.port = port
        self.moniker = moniker
        self.chain_id = chain_id  # None: the chain's own; set to serve a wrong chain-id
        self.connections: set[Connection] = set()
        self.stalled_until = 0.0  # monotonic; a lagging node forwards nothing and freezes /status
        self._frozen_height: int | None = None
        self.malformed_every = chain.scenario.malformed_every
        self._frames = 0
        self.frames_sent = 0
        self.accepting = True
        self.fail_validators_page: int | None = None  # fault injection: this /validators page errors
        self.queue_limit = QUEUE_LIMIT  # frames held for a slow reader before its subscriptions are cancelled
        self.slow_readers_cancelled = 0  # readers whose subscriptions were cancelled for falling behind
        self.send_buffer = 0  # fault injection: a small kernel send buffer (bytes), so a stalled reader shows soon
        self.record = False  # keep every frame sent, per connection (tests compare them with Redis)
        self.recorded: list[Connection] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- control (tests, scenarios) ---

    def stall(self, seconds: float) -> None:
        """Lag: forward no events and keep reporting the current height for `seconds`."""
        self._frozen_height = self.chain.latest_height
        self.stalled_until = time.monotonic() + seconds

    def is_stalled(self) -> bool:
        if self.stalled_until and time.monotonic() >= self.stalled_until:
            self.stalled_until, self._frozen_height = 0.0, None
        return bool(self.stalled_until)

    async def drop_connections(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"node restarting")

    def cancel_subscriptions(self, reason: str = "CometBFT exited") -> None:
        for conn in list(self.connections):
            for sub_id in conn.subs.values():
                conn.push(encode.cancelled_frame(sub_id, reason))
            conn.subs.clear()

    # --- events ---

    def broadcast(self, query: str, body: str) -> None:
        if self.is_stalled():
            return
        for conn in list(self.connections):
            sub_id = conn.subs.get(query)
            if sub_id is None:
                continue
            prefix = conn.prefixes.get(sub_id) or conn.prefixes.setdefault(
                sub_id, f'{{"jsonrpc":"2.0","id":{json.dumps(sub_id)}'
            )
            if not conn.push(prefix + body):
                # Like close_on_slow_client: the node cancels what a reader cannot keep up with.
                log.warning("sim %s: slow client, cancelling its subscriptions", self.moniker)
                self.slow_readers_cancelled += 1
                while not conn.queue.empty():  # what it could not read is dropped, as on a real node
                    conn.queue.get_nowait()
                for sid in conn.subs.values():
                    conn.push(encode.cancelled_frame(sid, "internal subscription event buffer is out of capacity"))
                conn.subs.clear()
                continue
            self._frames += 1
            if self.malformed_every and self._frames % self.malformed_every == 0:
                conn.push('{"jsonrpc":"2.0","id":' + str(sub_id) + ',"result":{"query":"tm.event=\'Vote\'","data":{"ty')

    # --- server ---

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/websocket", self.websocket)
        app.router.add_get("/v1/websocket", self.websocket)
        app.router.add_get("/status", self.status)
        app.router.add_get("/validators", self.validators)
        app.router.add_get("/block", self.block)
        app.router.add_get("/blockchain", self.blockchain)
        app.router.add_get("/commit", self.commit)
        app.router.add_get("/health", self.health)
        self.add_rest_routes(app)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.drop_connections()
        if self._runner:
            await self._runner.cleanup()

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        if not self.accepting:
            raise web.HTTPServiceUnavailable()
        ws = web.WebSocketResponse(heartbeat=27.0, max_msg_size=1_000_000, compress=False)
        if self.send_buffer:
            sock = request.transport.get_extra_info("socket") if request.transport else None
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer)
        await ws.prepare(request)
        conn = Connection(ws, self.queue_limit)
        if self.record:
            conn.sent_frames = []
            self.recorded.append(conn)
        self.connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._handle_request(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self.connections.discard(conn)
            conn.subs.clear()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _writer(self, conn: Connection) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            while True:
                frame = await conn.queue.get()
                if frame is None or conn.ws.closed:
                    return
                await conn.ws.send_str(frame)
                conn.sent += 1
                if conn.sent_frames is not None:
                    conn.sent_frames.append(frame)
                self.frames_sent += 1

    def _handle_request(self, conn: Connection, text: str) -> None:
        try:
            req = json.loads(text)
            if not isinstance(req, dict):
                raise ValueError("not an object")
        except ValueError:
            conn.push(encode.error_frame(None, -32700, "Parse error. Invalid JSON", "invalid request"))
            return
        rid = req.get("id")
        method = req.get("method")
        params = req.get("params") or {}
        query = params.get("query", "") if isinstance(params, dict) else ""
        if method == "subscribe":
            name = self._parse_query(query)
            if name is None:
                conn.push(
                    encode.error_frame(
                        rid, -32603, "Internal error", f"failed to parse query: {query!r} is not tm.event='<EventName>'"
                    )
                )
            elif len(conn.subs) >= MAX_SUBSCRIPTIONS:
                conn.push(
                    encode.error_frame(
                        rid, -32603, "Internal error", f"max_subscriptions_per_client {MAX_SUBSCRIPTIONS} reached"
                    )
                )
            elif name in conn.subs:
                conn.push(encode.error_frame(rid, -32603, "Internal error", "already subscribed"))
            else:
                conn.subs[name] = rid
                conn.push(encode.ack_frame(rid))
        elif method == "unsubscribe":
            name = self._parse_query(query)
            if name is None or name not in conn.subs:
                conn.push(encode.error_frame(rid, -32603, "Internal error", "subscription not found"))
            else:
                del conn.subs[name]
                conn.push(encode.ack_frame(rid))
        elif method == "unsubscribe_all":
            conn.subs.clear()
            conn.push(encode.ack_frame(rid))
        else:
            conn.push(encode.error_frame(rid, -32601, "Method not found"))

    @staticmethod
    def _parse_query(query: str) -> str | None:
        q = query.replace(" ", "")
        if q.startswith("tm.event='") and q.endswith("'"):
            name = q[len("tm.event='") : -1]
            return name if name in _KNOWN_QUERIES else None
        return None


class SimNetwork:
    """Chains and their nodes, played out in real time on one asyncio loop."""

    def __init__(self) -> None:
        self.chains: list[tuple[SimChain, list[SimNode]]] = []
        self._tasks: list[asyncio.Task] = []
        self.events_emitted = 0

    def add(self, chain: SimChain, ports: list[int], *, monikers: list[str] | None = None) -> list[SimNode]:
        nodes = [
            SimNode(chain, port, moniker=(monikers or [])[i] if monikers and i < len(monikers) else f"sim{i}")
            for i, port in enumerate(ports)
        ]
        self.chains.append((chain, nodes))
        return nodes

    async def start(self) -> None:
        for _, nodes in self.chains:
            for node in nodes:
                await node.start()
        for chain, nodes in self.chains:
            self._tasks.append(asyncio.create_task(self._play(chain, nodes), name=f"sim-{chain.chain_id}"))
            if chain.scenario.drop_connections_every > 0:
                self._tasks.append(asyncio.create_task(self._dropper(chain, nodes)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, nodes in self.chains:
            for node in nodes:
                await node.stop()

    async def _dropper(self, chain: SimChain, nodes: list[SimNode]) -> None:
        while True:
            await asyncio.sleep(chain.scenario.drop_connections_every)
            for node in nodes:
                await node.drop_connections()

    async def _play(self, chain: SimChain, nodes: list[SimNode]) -> None:
        loop = asyncio.get_running_loop()
        height = chain.latest_height + 1
        start_mono = loop.time()
        start_wall = datetime.now(UTC)
        while True:
            next_start = None
            for em in chain.emit_height(height, start_wall):
                delay = start_mono + em.offset - loop.time()
                if delay > 0.0005:
                    await asyncio.sleep(delay)
                if em.end:
                    next_start = em.offset
                    break
                if em.block is not None:
                    chain.commit_block(em.block)
                    continue
                body = event_body(em)
                for node in nodes:
                    node.broadcast(em.query, body)
                self.events_emitted += 1
            if next_start is None:
                log.warning("sim %s: below 2/3 of the power online at height %s; silent", chain.chain_id, height)
                await asyncio.Event().wait()
                return
            start_mono += next_start
            start_wall += timedelta(seconds=next_start)
            height += 1
            # Let the writers run even when the block time is zero (load tests).
            await asyncio.sleep(0)
