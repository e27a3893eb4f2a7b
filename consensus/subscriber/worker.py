"""One chain's subscription: connect, subscribe, read, hand every frame to the writer; reconnect
forever with backoff; fail over between endpoints; record what it did not see as gaps."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import websocket

from consensus import protocol as p
from consensus.networks import websocket_url
from consensus.protocol.stream import KIND_FRAMES, KIND_GAP, KIND_STATUS, StreamEntry, encode_frames

from .endpoints import HealthChecker, choose, judge
from .writer import StreamWriter

log = logging.getLogger("ctop.subscriber")

# What ctop subscribes to: 4 of the node's 5 allowed subscriptions per connection.
SUBSCRIPTIONS = ("NewRound", "NewRoundStep", "Vote", "CompleteProposal")


@dataclass
class Options:
    silence_timeout: float = 30.0  # no frame for this long while the chain advances: reconnect
    health_interval: float = 10.0
    http_timeout: float = 5.0
    max_lag_blocks: int = 5
    stale_after: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    backfill_limit: int = 1000  # most recent heights of a gap to backfill from /block


@dataclass
class Counters:
    events: int = 0
    other_frames: int = 0
    malformed: int = 0
    reconnects: int = 0
    failovers: int = 0
    gaps: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class SessionEnd(Exception):
    """Why a connection ended (logged; the worker reconnects)."""

    def __init__(self, reason: str, got_events: bool = False, *, switch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.got_events = got_events
        self.switch = switch  # a deliberate failover/failback: reconnect at once


class ChainWorker(threading.Thread):
    def __init__(
        self,
        *,
        chain_name: str,
        chain_id: str,
        endpoints: list[tuple[str, int]],
        writer: StreamWriter,
        stop: threading.Event,
        options: Options,
        last_height: int | None = None,
        adopt_chain_id: Callable[[str], str] | None = None,
        on_gap: Callable[[int, int, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"subscriber-{chain_name}", daemon=True)
        self.chain = chain_name
        self.chain_id = chain_id
        self.writer = writer
        self.stop = stop
        self.opts = options
        self.health = HealthChecker(
            chain_name, endpoints, interval=options.health_interval, timeout=options.http_timeout, stop=stop
        )
        self.adopt_chain_id = adopt_chain_id
        self.on_gap = on_gap
        self.counters = Counters()
        self.last_height = last_height  # highest height observed (from Redis across restarts)
        self.connected_url = ""
        self._all_failing_logged = False
        self._batch: list[bytes] = []
        self._batch_height = 0
        self._batch_started = 0.0
        self._batch_ns = 0

    # --- bookkeeping ---

    def _put(self, kind: bytes, payload: bytes, height: int | None = None) -> None:
        self._flush()  # control entries keep their place after the frames before them
        entry = StreamEntry(
            kind=kind, chain=self.chain, received_ns=time.time_ns(), payload=payload, endpoint=self.connected_url
        )
        self.writer.put(entry, height, self.stop)

    # Frames go to Redis in bursts: one stream entry per up to BATCH_FRAMES frames or BATCH_SECONDS,
    # which takes Redis and the per-entry work out of the hot path (one XADD for many events).
    BATCH_FRAMES = 256
    BATCH_SECONDS = 0.02

    def _frame_out(self, text: str, height: int | None) -> None:
        if not self._batch:
            self._batch_started = time.monotonic()
            self._batch_ns = time.time_ns()
        self._batch.append(text.encode())
        if height is not None and height > self._batch_height:
            self._batch_height = height
        if len(self._batch) >= self.BATCH_FRAMES:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        entry = StreamEntry(
            kind=KIND_FRAMES,
            chain=self.chain,
            received_ns=self._batch_ns,
            payload=encode_frames(self._batch),
            endpoint=self.connected_url,
        )
        height, count = self._batch_height or None, len(self._batch)
        self._batch, self._batch_height = [], 0
        self.writer.put(entry, height, self.stop, count=count)

    def _status(self, state: str, **extra: object) -> None:
        doc = {"state": state, "endpoint": self.connected_url, "height": self.last_height, **extra}
        self._put(KIND_STATUS, json.dumps(doc).encode())

    def _gap(self, start: int, end: int, reason: str) -> None:
        if end < start:
            return
        self.counters.gaps += 1
        log.warning("chain=%s gap heights %d..%d: %s", self.chain, start, end, reason)
        self._put(KIND_GAP, json.dumps({"from": start, "to": end, "reason": reason}).encode())
        if self.on_gap:
            self.on_gap(start, end, reason)

    # --- main loop ---

    def run(self) -> None:
        self.health.start()
        self.health.checked.wait(self.opts.http_timeout * 2)
        attempt = 0
        while not self.stop.is_set():
            try:
                url = self._pick_endpoint()
            except Exception:
                log.exception("chain=%s unexpected error while choosing an endpoint", self.chain)
                url = None
            if url is None:
                attempt += 1
                self._sleep(self._backoff(attempt))
                self.health.check_now()
                continue
            self._all_failing_logged = False
            try:
                got_events = self._session(url)
                reason, switch = "closed", False
            except SessionEnd as end:
                got_events, reason, switch = end.got_events, end.reason, end.switch
            except (websocket.WebSocketException, OSError) as exc:
                got_events, reason, switch = False, f"{type(exc).__name__}: {exc}", False
            except Exception as exc:  # a bug must never kill the chain's subscription silently
                log.exception("chain=%s unexpected error; reconnecting", self.chain)
                got_events, reason, switch = False, f"unexpected {type(exc).__name__}: {exc}", False
            if self.stop.is_set():
                break
            reason = reason.split(" -+-+- ")[0]  # websocket-client appends the whole HTTP response
            if self.connected_url:
                self.counters.reconnects += 1
                if switch:
                    self.counters.failovers += 1
                log.warning("chain=%s endpoint=%s disconnected (%s); reconnecting", self.chain, url, reason)
                self._status("disconnected", reason=reason)
                self.connected_url = ""
            else:
                self.counters.error("connect_failed")
            attempt = 0 if (got_events or switch) else attempt + 1
            if not switch:
                delay = self._backoff(attempt)
                if not got_events:
                    log.warning("chain=%s cannot use %s (%s); retrying in %.1fs", self.chain, url, reason, delay)
                self._sleep(delay)
        self.connected_url = ""

    def _backoff(self, attempt: int) -> float:
        # Exponential with full jitter: many ctops (or chains) never reconnect in lockstep.
        return random.uniform(0, min(self.opts.backoff_max, self.opts.backoff_base * 2 ** min(attempt, 16)))

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _pick_endpoint(self) -> str | None:
        states = self.health.snapshot()
        if not self.chain_id and self.adopt_chain_id:
            reported = next((s.status.chain_id for s in sorted(states, key=lambda s: s.priority) if s.status), "")
            if reported:
                try:
                    self.chain_id = self.adopt_chain_id(reported)
                except Exception as exc:
                    log.error("chain=%s cannot adopt chain-id %r: %s", self.chain, reported, exc)
        verdicts = judge(
            states, self.chain_id, max_lag_blocks=self.opts.max_lag_blocks, stale_after=self.opts.stale_after
        )
        chosen = choose(verdicts)
        if chosen is None:
            if not self._all_failing_logged:
                detail = "; ".join(f"{v.url}: {v.reason}" for v in verdicts)
                log.error("chain=%s all endpoints failing, ctop is blind on this chain: %s", self.chain, detail)
                self._status("all_failing", reason=detail)
                self._all_failing_logged = True
            return None
        return chosen.url

    def _session(self, url: str) -> bool:
        ws = websocket.WebSocket(skip_utf8_validation=True)
        ws.connect(websocket_url(url), timeout=self.opts.http_timeout)
        got_events = False
        try:
            for i, name in enumerate(SUBSCRIPTIONS):
                ws.send(p.subscribe_request(i, p.QUERIES[name]))
            ws.settimeout(1.0)
            self.connected_url = url
            log.info("chain=%s connected to %s", self.chain, url)
            self._status("connected")
            first = True
            last_frame = next_check = time.monotonic()
            timeout = 1.0
            while not self.stop.is_set():
                # Wait briefly while a batch is open (it must not sit for a quiet chain's next event);
                # websocket-client resumes a frame that a timeout interrupted.
                want = self.BATCH_SECONDS if self._batch else 1.0
                if want != timeout:
                    ws.settimeout(want)
                    timeout = want
                try:
                    text = ws.recv()
                except websocket.WebSocketTimeoutException:
                    text = None
                now = time.monotonic()
                if self._batch and (text is None or now - self._batch_started >= self.BATCH_SECONDS):
                    self._flush()
                if text:
                    last_frame = now
                    if self._frame(text, first):
                        first = False
                        got_events = True
                elif text == "":
                    raise SessionEnd("closed by the node", got_events)
                if now >= next_check:
                    next_check = now + 1.0
                    self._check(url, now - last_frame, got_events)
        finally:
            self._flush()
            ws.close(timeout=1)
        return got_events

    def _frame(self, text: str, first: bool) -> bool:
        """Handle one frame; True if it was a consensus event with a height."""
        peek = p.peek_frame(text)
        if peek.kind == "event" and peek.height is not None:
            h = peek.height
            if first:
                if self.last_height is None:
                    if not peek.new_height:
                        self._gap(h, h, "monitoring started mid-height")
                else:
                    self._gap(
                        self.last_height,
                        h if not peek.new_height else h - 1,
                        "not listening (disconnected or restarted)",
                    )
            elif self.last_height is not None and h > self.last_height + 1:
                self._gap(
                    self.last_height,
                    h if not peek.new_height else h - 1,
                    "heights skipped on the feed (frames dropped by the node?)",
                )
            if self.last_height is None or h > self.last_height:
                self.last_height = h
            self.counters.events += 1
            self._frame_out(text, h)
            return True
        try:
            value = p.decode_frame(text)
        except p.ProtocolError as exc:
            # Forwarded anyway: stream_events dead-letters it with the reason, nothing is dropped here.
            self.counters.malformed += 1
            log.debug("chain=%s malformed frame forwarded: %s", self.chain, exc)
            self._frame_out(text, None)
            return False
        if isinstance(value, p.SubscribeAck):
            self.counters.other_frames += 1
            return False
        if isinstance(value, p.RPCError):
            self.counters.error(value.kind.name.lower())
            if value.kind is p.RPCErrorKind.ALREADY_SUBSCRIBED:
                return False  # we are subscribed: fine
            if value.kind is p.RPCErrorKind.SUBSCRIPTION_CANCELLED:
                raise SessionEnd(f"subscription cancelled by the node ({value.reason})", True)
            raise SessionEnd(f"node replied {value}")
        # A decodable event that the fast path did not recognise (no height): keep it.
        self.counters.events += 1
        self._frame_out(text, None)
        return False

    def _check(self, url: str, silent_for: float, got_events: bool) -> None:
        verdicts = judge(
            self.health.snapshot(),
            self.chain_id,
            max_lag_blocks=self.opts.max_lag_blocks,
            stale_after=self.opts.stale_after,
        )
        current = next((v for v in verdicts if v.url == url), None)
        preferred = choose(verdicts)
        if current is not None and not current.healthy and preferred is not None:
            log.warning("chain=%s failover from %s (%s) to %s", self.chain, url, current.reason, preferred.url)
            raise SessionEnd(f"failover: {current.reason}", got_events, switch=True)
        if preferred is not None and preferred.url != url:
            order = [v.url for v in verdicts]
            if order.index(preferred.url) < order.index(url):
                log.info("chain=%s %s is healthy again; moving back to it", self.chain, preferred.url)
                raise SessionEnd("failback to a preferred endpoint", got_events, switch=True)
        if silent_for > self.opts.silence_timeout:
            best = self.health.best_height()
            # Silence during a halt is expected; silence while the chain advances is a dead feed.
            if self.last_height is None or best > self.last_height + 1:
                raise SessionEnd(f"silent feed for {silent_for:.0f}s while the chain is at {best}", got_events)
