"""One chain's subscription: connect, subscribe, read, hand every frame to the writer; reconnect
forever; switch to another usable endpoint at once when the current one fails; record what it did
not see as gaps; refuse heights nothing vouches for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import websocket
from django.conf import settings

from common.text import one_line, redact_url
from consensus import protocol as p
from consensus.endpoints import check_endpoints, choose
from consensus.models import FeedState
from consensus.networks import websocket_url
from consensus.plausible import HeightReference

from .health import HealthChecker
from .options import SUBSCRIPTIONS, Counters, Options, SessionEnd
from .outbox import Outbox
from .writer import StreamWriter
from .wsclient import BoundedWebSocket, MessageTooLarge, MessageTooSlow

log = logging.getLogger("ctop.subscriber")


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
        last_height: tuple[int, float | None] | None = None,
        adopt_chain_id: Callable[[str], str] | None = None,
        on_gap: Callable[[int, int, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"subscriber-{chain_name}", daemon=True)
        self.chain = chain_name
        self.chain_id = chain_id
        self.stop = stop
        self.opts = options
        self.reference = HeightReference(
            options.plausible_heights or settings.CTOP["PLAUSIBLE_HEIGHTS"],
            options.max_blocks_per_second or settings.CTOP["MAX_BLOCKS_PER_SECOND"],
            agree=options.max_lag_blocks,
        )
        self.health = HealthChecker(
            chain_name,
            endpoints,
            interval=options.health_interval,
            timeout=options.http_timeout,
            stop=stop,
            reference=self.reference,
            penalty_base=options.backoff_base,
            penalty_max=options.backoff_max,
        )
        self.out = Outbox(chain_name, writer, stop)
        self.adopt_chain_id = adopt_chain_id
        self.on_gap = on_gap
        self.counters = Counters()
        # The highest height observed: from Redis across restarts, checked against the window first.
        self.last_height = last_height[0] if last_height else None
        if last_height:
            at = last_height[1]
            age = time.time() - at if at is not None else 30 * 86400.0  # no time kept: assume old
            self.reference.note_record(last_height[0], self.reference.clock() - max(age, 0.0))
        self._healed = False
        self.connected_url = ""
        self.first_event_at = 0.0  # monotonic: the current session's first event (failover timing)
        self._watching_since: float | None = None  # unix times of the current episodes
        self._blind_since: float | None = None
        self._connected_at: float | None = None
        self._blind_reason = ""
        self._wrong_chain_said: set[str] = set()
        self._next_heartbeat = 0.0
        self._gap_reason = "not listening (disconnected or restarted)"

    # --- bookkeeping ---

    # A change between watching and blind counts only once it has lasted this long: a reconnect of a
    # few seconds neither restarts "watching since" nor ends a blind spell.
    EPISODE_SETTLE = 30.0

    def _episode_since(self, connected: bool) -> float:
        """Since when (unix time) ctop has been watching the chain (connected) or blind (not)."""
        now = time.time()
        if connected:
            self._watching_since = self._watching_since or now
            if self._connected_at and now - self._connected_at >= self.EPISODE_SETTLE:
                self._blind_since = None  # connected long enough: the next blind spell starts afresh
            return self._watching_since
        self._blind_since = self._blind_since or now
        if now - self._blind_since >= self.EPISODE_SETTLE:
            self._watching_since = None  # blind long enough: the next connection starts afresh
        return self._blind_since

    def _status(self, state: str, *, reason: str = "") -> None:
        since = self._episode_since(state == FeedState.CONNECTED)
        self.out.status(state, self.last_height, self.opts.health_interval, reason=reason, since=since)
        self._next_heartbeat = time.monotonic() + self.opts.health_interval

    def _heartbeat(self) -> None:
        """The chain's state, repeated every health interval: a reader can tell a live report from an
        old one (a stopped subscriber reports nothing, and its last word must not pass for news)."""
        if time.monotonic() < self._next_heartbeat:
            return
        if self.connected_url:
            self._status(FeedState.CONNECTED)
        else:
            self._status(
                FeedState.ALL_FAILING if self._blind_reason else FeedState.DISCONNECTED, reason=self._blind_reason
            )

    def _gap(self, start: int, end: int, reason: str) -> None:
        if end < start:
            return
        self.counters.gaps += 1
        log.warning("chain=%s gap heights %d..%d: %s", self.chain, start, end, reason)
        self.out.gap(start, end, reason)
        if self.on_gap:
            self.on_gap(start, end, reason)

    def _refresh_window(self) -> None:
        window = self.health.window()
        self.out.window = window
        if window is not None and not self._healed:
            self._healed = True
            if self.health.heal():
                log.warning(
                    "chain=%s the recorded latest height %s is beyond any plausible height (%s): a value "
                    "from a broken or lying endpoint; starting the record afresh",
                    self.chain,
                    self.last_height,
                    window.describe(),
                )
                self.last_height = None

    # --- main loop ---

    def run(self) -> None:
        self.health.start()
        self.health.checked.wait(self.opts.http_timeout * 2)
        attempt = 0
        while not self.stop.is_set():
            self._refresh_window()
            try:
                url = self._pick_endpoint()
            except Exception:
                log.exception("chain=%s unexpected error while choosing an endpoint", self.chain)
                url = None
            if url is None:
                attempt += 1
                self._heartbeat()
                # Wake at once when a penalised endpoint may be tried again; otherwise wait for the
                # health checker, asking it for fresh answers less and less often (1, 2, 4 ... 32 s).
                wait = self.health.next_penalty_end()
                self._sleep(min(wait, 1.0) if wait is not None else 1.0)
                if attempt & (attempt - 1) == 0 or attempt % 32 == 0:
                    self.health.check_now()
                continue
            attempt = 0
            session_started = time.monotonic()
            try:
                got_events = self._session(url)
                reason, switch = "closed", False
            except SessionEnd as end:
                got_events, reason, switch = end.got_events, end.reason, end.switch
            except (MessageTooLarge, MessageTooSlow) as exc:
                got_events, reason, switch = False, str(exc), False
                self._gap_reason = f"connection dropped: {exc}"
                log.error("chain=%s endpoint=%s %s; dropping the connection", self.chain, redact_url(url), exc)
            except (websocket.WebSocketException, OSError) as exc:
                got_events, reason, switch = False, f"{type(exc).__name__}: {exc}", False
            except Exception as exc:  # a bug must never kill the chain's subscription silently
                log.exception("chain=%s unexpected error; reconnecting", self.chain)
                got_events, reason, switch = False, f"unexpected {type(exc).__name__}", False
            if self.stop.is_set():
                break
            # websocket-client appends the whole HTTP response to a handshake error; the node's text
            # is untrusted in any case.
            reason = one_line(reason.split(" -+-+- ")[0], 200)
            if got_events and time.monotonic() - session_started >= self.EPISODE_SETTLE:
                # Forgiven only after a session that lasted: an endpoint that sends one event and
                # drops keeps its growing penalty.
                self.health.succeeded(url)
            if self.connected_url:
                self.counters.reconnects += 1
                if switch:
                    self.counters.failovers += 1
                log.warning("chain=%s endpoint=%s disconnected (%s)", self.chain, redact_url(url), reason)
                self.connected_url = self.out.endpoint = ""
                self._status(FeedState.DISCONNECTED, reason=reason)
            else:
                self.counters.error("connect_failed")
            if not switch:
                penalty = self.health.penalize(url, reason)
                if not got_events:
                    log.warning(
                        "chain=%s cannot use %s (%s); not retrying it for %.1fs",
                        self.chain,
                        redact_url(url),
                        reason,
                        penalty,
                    )
        self.connected_url = ""
        self.health.join(1.0)

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _checks(self):
        checks = check_endpoints(
            self.health.snapshot(),
            self.chain_id,
            max_lag_blocks=self.opts.max_lag_blocks,
            stale_after=self.opts.stale_after,
        )
        for c in checks:
            # An endpoint on another chain is a configuration mistake worth saying once, loudly.
            if c.reason.startswith("wrong chain-id") and c.url not in self._wrong_chain_said:
                self._wrong_chain_said.add(c.url)
                log.error("chain=%s endpoint=%s refused: %s", self.chain, redact_url(c.url), c.reason)
        return checks

    def _pick_endpoint(self) -> str | None:
        if not self.chain_id and self.adopt_chain_id:
            states = sorted(self.health.snapshot(), key=lambda s: s.priority)
            reported = next((s.status.chain_id for s in states if s.status and not s.implausible), "")
            if reported:
                try:
                    self.chain_id = self.adopt_chain_id(reported)
                except Exception as exc:
                    log.error("chain=%s cannot adopt chain-id %r: %s", self.chain, one_line(reported, 80), exc)
        checks = self._checks()
        chosen = choose(checks)
        if chosen is None:
            detail = one_line("; ".join(f"{redact_url(c.url)}: {c.reason}" for c in checks), 500)
            if not self._blind_reason:  # once until connected again; the heartbeat repeats it
                log.error("chain=%s all endpoints failing, ctop is blind on this chain: %s", self.chain, detail)
                self._blind_reason = detail
                self._status(FeedState.ALL_FAILING, reason=detail)
            self._blind_reason = detail
            return None
        return chosen.url

    def _session(self, url: str) -> bool:
        ws = BoundedWebSocket(
            max_message=self.opts.max_frame_bytes or settings.CTOP["WS_MAX_FRAME_BYTES"],
            message_deadline=self.opts.message_deadline,
            skip_utf8_validation=True,
        )
        ws.connect_within(websocket_url(url), self.opts.http_timeout)
        got_events = False
        try:
            for i, name in enumerate(SUBSCRIPTIONS):
                ws.send(p.subscribe_request(i, p.QUERIES[name]))
            ws.settimeout(1.0)
            self.connected_url = url
            self._connected_at = time.time()
            self._blind_reason = ""
            self.out.endpoint = redact_url(url)
            log.info("chain=%s connected to %s", self.chain, redact_url(url))
            self._status(FeedState.CONNECTED)
            first = True
            last_frame = next_check = time.monotonic()
            timeout = 1.0
            while not self.stop.is_set():
                # Wait briefly while a batch is open (it must not sit for a quiet chain's next event);
                # websocket-client resumes a frame that a timeout interrupted.
                want = self.out.BATCH_SECONDS if self.out.open else 1.0
                if want != timeout:
                    ws.settimeout(want)
                    timeout = want
                try:
                    text = ws.recv()
                except websocket.WebSocketTimeoutException:
                    ws.check_message_deadline()
                    text = None
                now = time.monotonic()
                if self.out.open and (text is None or now - self.out.started >= self.out.BATCH_SECONDS):
                    self._flush()
                if text:
                    last_frame = now
                    if self._frame(text, first):
                        if first:
                            self.first_event_at = now
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

    def _flush(self) -> None:
        height = self.out.flush()
        if height is not None:
            self.health.note_record(height)

    def _frame(self, text: str, first: bool) -> bool:
        """Handle one frame; True if it was a consensus event with a height."""
        peek = p.peek_frame(text)
        if peek.kind == "event" and peek.height is not None:
            h = peek.height
            window = self.out.window
            if window is None or h not in window:
                self.counters.refused += 1
                reason = (
                    f"height {h} is outside the plausible heights {window.describe()}"
                    if window
                    else f"height {h} cannot be checked yet (no endpoint's /status known)"
                )
                if self.counters.refused in (1, 10, 100) or self.counters.refused % 1000 == 0:
                    log.warning("chain=%s refused %d frame(s): %s", self.chain, self.counters.refused, reason)
                self.out.refused(text, reason)
                return False
            if first:
                if self.last_height is None:
                    if not peek.new_height:
                        self._gap(h, h, "monitoring started mid-height")
                else:
                    self._gap(self.last_height, h if not peek.new_height else h - 1, self._gap_reason)
                self._gap_reason = "not listening (disconnected or restarted)"
            elif self.last_height is not None and h > self.last_height + 1:
                self._gap(
                    self.last_height,
                    h if not peek.new_height else h - 1,
                    "heights skipped on the feed (frames dropped by the node?)",
                )
            if self.last_height is None or h > self.last_height:
                self.last_height = h
            self.counters.events += 1
            # By type for the metrics: a known name only (a hostile node's made-up type is "other").
            kind = peek.event if peek.event in p.EVENT_NAMES else "other"
            self.counters.by_type[kind] = self.counters.by_type.get(kind, 0) + 1
            self.out.frame(text, h)
            return True
        try:
            value = p.decode_frame(text)
        except p.ProtocolError as exc:
            # Forwarded anyway: stream_events dead-letters it with the reason, nothing is dropped here.
            self.counters.malformed += 1
            log.debug("chain=%s malformed frame forwarded: %s", self.chain, exc)
            self.out.frame(text, None)
            return False
        if isinstance(value, p.SubscribeAck):
            self.counters.other_frames += 1
            return False
        if isinstance(value, p.RPCError):
            self.counters.error(value.kind.name.lower())
            if value.kind is p.RPCErrorKind.ALREADY_SUBSCRIBED:
                return False  # we are subscribed: fine
            if value.kind is p.RPCErrorKind.SUBSCRIPTION_CANCELLED:
                raise SessionEnd(f"subscription cancelled by the node ({one_line(value.reason, 120)})", True)
            raise SessionEnd(f"node replied {value}")
        # A decodable event that the quick peek did not recognise (no height): kept, and checked
        # against the entry's window by stream_events.
        self.counters.events += 1
        self.counters.by_type["other"] = self.counters.by_type.get("other", 0) + 1
        self.out.frame(text, None)
        return False

    def _check(self, url: str, silent_for: float, got_events: bool) -> None:
        self._refresh_window()
        self._heartbeat()
        checks = self._checks()
        current = next((c for c in checks if c.url == url), None)
        preferred = choose(checks)
        if current is not None and not current.usable and preferred is not None:
            log.warning(
                "chain=%s failover from %s (%s) to %s",
                self.chain,
                redact_url(url),
                current.reason,
                redact_url(preferred.url),
            )
            raise SessionEnd(f"failover: {current.reason}", got_events, switch=True)
        if preferred is not None and preferred.url != url:
            order = [c.url for c in checks]
            if order.index(preferred.url) < order.index(url):
                log.info("chain=%s %s is healthy again; moving back to it", self.chain, redact_url(preferred.url))
                raise SessionEnd("failback to a preferred endpoint", got_events, switch=True)
        if silent_for > self.opts.silence_timeout:
            best = self.health.best_height()
            # Silence during a halt is expected; silence while the chain advances is a dead feed.
            if self.last_height is None or best > self.last_height + 1:
                raise SessionEnd(f"silent feed for {silent_for:.0f}s while the chain is at {best}", got_events)
