"""Keeping every endpoint's /status current for one chain, so the websocket worker never blocks on
HTTP while it reads, and knows at once where to go when its endpoint fails.

One poller thread per endpoint: a slow or dripping endpoint delays nobody's status but its own
(each call has a total deadline as well). Every answer is checked for plausibility against the
others and against ctop's own record (consensus.plausible). A websocket session that fails puts
its endpoint on a short penalty, growing with repeated failures, so the worker switches to
another usable endpoint at once instead of retrying the dead one (and falls back to the preferred
one once the penalty is over and it answers again).
"""

from __future__ import annotations

import logging
import threading
import time

from common.backoff import exponential
from consensus import protocol as p
from consensus.endpoints import EndpointState, mark_implausible
from consensus.plausible import HeightReference, Window
from consensus.rpc import EndpointError, RPCClient

log = logging.getLogger("ctop.subscriber")


class HealthChecker:
    def __init__(
        self,
        chain_name: str,
        endpoints: list[tuple[str, int]],
        *,
        interval: float,
        timeout: float,
        stop: threading.Event,
        reference: HeightReference | None = None,
        penalty_base: float = 0.5,
        penalty_max: float = 30.0,
    ) -> None:
        self.chain_name = chain_name
        self.states = [EndpointState(url, priority) for url, priority in endpoints]
        self.interval = interval
        self.timeout = timeout
        self.stop = stop
        self.reference = reference or HeightReference()
        self.penalty_base = penalty_base
        self.penalty_max = penalty_max
        self.lock = threading.Lock()
        self.checked = threading.Event()  # set once every endpoint has answered or failed once
        self._wakes = {s.url: threading.Event() for s in self.states}
        self._threads = [
            threading.Thread(target=self._poll, args=(s,), name=f"health-{chain_name}-{i}", daemon=True)
            for i, s in enumerate(self.states)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self, timeout: float | None = None) -> None:
        for t in self._threads:
            t.join(timeout)

    def check_now(self) -> None:
        for wake in self._wakes.values():
            wake.set()

    def _poll(self, state: EndpointState) -> None:
        client = RPCClient(state.url, timeout=self.timeout)
        wake = self._wakes[state.url]
        while not self.stop.is_set():
            try:
                status, error = client.status(), ""
            except EndpointError as exc:
                status, error = None, exc.detail
            except p.ProtocolError as exc:
                status, error = None, f"/status: {exc}"
            except Exception as exc:  # a bug must not freeze this endpoint's last status for good
                log.exception("chain=%s /status poll failed unexpectedly", self.chain_name)
                status, error = None, f"/status: unexpected {type(exc).__name__}"
            with self.lock:
                state.status, state.error, state.checked_at = status, error, time.monotonic()
                mark_implausible(self.states, self.reference)
                if all(s.checked_at for s in self.states):
                    self.checked.set()
            wake.wait(self.interval)
            wake.clear()

    # --- what the worker asks ---

    def snapshot(self) -> list[EndpointState]:
        with self.lock:
            return [
                EndpointState(
                    s.url,
                    s.priority,
                    s.status,
                    s.error,
                    s.checked_at,
                    s.implausible,
                    s.corroborated,
                    s.penalty_until,
                    s.penalty_reason,
                )
                for s in self.states
            ]

    def best_height(self) -> int:
        """The highest plausible height any endpoint reports."""
        with self.lock:
            return max((s.status.latest_height for s in self.states if s.status and not s.implausible), default=0)

    def window(self) -> Window | None:
        with self.lock:
            return self.reference.window()

    def note_record(self, height: int, at: float | None = None) -> None:
        with self.lock:
            self.reference.note_record(height, at)

    def heal(self) -> bool:
        with self.lock:
            return self.reference.heal()

    def penalize(self, url: str, reason: str) -> float:
        """A websocket session on `url` failed: keep it out of use for a while (longer after each
        failure in a row), and ask it for its /status again. Returns the penalty in seconds."""
        with self.lock:
            state = next(s for s in self.states if s.url == url)
            state.failures += 1
            seconds = exponential(state.failures + 1, base=self.penalty_base, cap=self.penalty_max)
            state.penalty_until = time.monotonic() + seconds
            state.penalty_reason = f"websocket failed ({reason})"
        self._wakes[url].set()
        return seconds

    def succeeded(self, url: str) -> None:
        """A session on `url` delivered events: its failures are forgiven."""
        with self.lock:
            state = next(s for s in self.states if s.url == url)
            state.failures, state.penalty_until, state.penalty_reason = 0, 0.0, ""

    def next_penalty_end(self) -> float | None:
        """Seconds until the first penalised endpoint may be tried again (None: none is penalised)."""
        now = time.monotonic()
        with self.lock:
            ends = [s.penalty_until - now for s in self.states if s.penalty_until > now]
        return min(ends) if ends else None
