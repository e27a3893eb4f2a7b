"""SubscribeRunner: every chain's worker, one Redis writer, periodic per-chain log lines.

The management command is a thin shell around this; tests drive it directly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import redis
from prometheus_client.core import Metric

from common import metrics
from common.text import one_line
from consensus.streams import decode_last_height, group_info, last_height_key, stream_key

from .backfill import Backfiller
from .options import Options
from .worker import ChainWorker
from .writer import StreamWriter

log = logging.getLogger("ctop.subscriber")


@dataclass(frozen=True)
class ChainTarget:
    name: str
    chain_id: str
    endpoints: list[tuple[str, int]]  # (url, priority)
    adopt_chain_id: Callable[[str], str] | None = None


@dataclass
class RunReport:
    delivered: int
    undelivered: int
    per_chain: dict[str, int]


class SubscribeRunner:
    def __init__(
        self,
        targets: list[ChainTarget],
        *,
        client: redis.Redis,
        options: Options | None = None,
        maxlen: int = 2_000_000,
        buffer_bytes: int = 256 * 2**20,
        max_events: int | None = None,
        log_interval: float = 10.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.targets = list(targets)
        self.client = client
        self.opts = options or Options()
        self.maxlen = maxlen
        self.log_interval = log_interval
        self.stop = stop or threading.Event()
        self.writer = StreamWriter(client, maxlen=maxlen, buffer_bytes=buffer_bytes, stop_after=max_events)
        self.workers: list[ChainWorker] = []
        self.backfillers: list[Backfiller] = []

    def metrics(self) -> Iterator[Metric]:
        """The workers' counts, for --metrics-port (common.metrics.PIPELINE names them)."""
        families = {
            name: metrics.counter(name)
            for name in (
                "ctop_subscriber_events",
                "ctop_subscriber_reconnects",
                "ctop_subscriber_failovers",
                "ctop_subscriber_gaps",
                "ctop_subscriber_malformed_frames",
                "ctop_subscriber_refused_frames",
            )
        }
        height = metrics.gauge("ctop_subscriber_height")
        for w in list(self.workers):
            c = w.counters
            for kind, n in sorted(dict(c.by_type).items()):
                families["ctop_subscriber_events"].add_metric([w.chain, kind], n)
            for name, n in (
                ("ctop_subscriber_reconnects", c.reconnects),
                ("ctop_subscriber_failovers", c.failovers),
                ("ctop_subscriber_gaps", c.gaps),
                ("ctop_subscriber_malformed_frames", c.malformed),
                ("ctop_subscriber_refused_frames", c.refused),
            ):
                families[name].add_metric([w.chain], n)
            if w.last_height is not None:
                height.add_metric([w.chain], w.last_height)
        yield from families.values()
        yield height

    def _last_height(self, chain: str) -> tuple[int, float | None] | None:
        try:
            raw = self.client.get(last_height_key(chain))
        except redis.RedisError as exc:
            log.error(
                "chain=%s cannot read the last delivered height from Redis (%s); gaps since the last run "
                "will show from the first height seen",
                chain,
                one_line(exc),
            )
            return None
        return decode_last_height(raw)

    def start(self) -> None:
        if self.workers:
            return
        self.writer.start()
        for target in self.targets:
            self._start_target(target)

    def _start_target(self, target: ChainTarget) -> None:
        worker = ChainWorker(
            chain_name=target.name,
            chain_id=target.chain_id,
            endpoints=target.endpoints,
            writer=self.writer,
            stop=self.stop,
            options=self.opts,
            last_height=self._last_height(target.name),
            adopt_chain_id=target.adopt_chain_id,
        )
        backfiller = Backfiller(
            target.name,
            worker.health,
            self.writer,
            self.stop,
            limit=self.opts.backfill_limit,
            timeout=self.opts.http_timeout,
        )
        worker.on_gap = backfiller.add
        self.workers.append(worker)
        self.backfillers.append(backfiller)
        backfiller.start()
        worker.start()

    def add_targets(self, targets: list[ChainTarget]) -> list[str]:
        """Start watching chains added since (in the admin, by another command); returns their names."""
        known = {w.chain for w in self.workers}
        new = [t for t in targets if t.name not in known]
        for target in new:
            self.targets.append(target)
            self._start_target(target)
            log.info("now also watching %s (%d endpoint(s))", target.name, len(target.endpoints))
        return [t.name for t in new]

    def run(
        self,
        *,
        duration: float | None = None,
        flush_timeout: float = 5.0,
        refresh: Callable[[], list[ChainTarget]] | None = None,
        refresh_every: float = 10.0,
    ) -> RunReport:
        """Run until stop is set, --max-events are delivered, or `duration` seconds pass. `refresh`:
        where to look (every `refresh_every` seconds) for chains added later."""
        self.start()
        deadline = time.monotonic() + duration if duration else None
        next_refresh = time.monotonic() + refresh_every
        next_log = time.monotonic() + self.log_interval
        last_counts = {w.chain: 0 for w in self.workers}
        last_time = time.monotonic()
        while not self.stop.is_set():
            if self.writer.done.wait(0.2):
                break
            now = time.monotonic()
            if deadline and now >= deadline:
                break
            if refresh is not None and now >= next_refresh:
                next_refresh = now + refresh_every
                try:
                    self.add_targets(refresh())
                except Exception as exc:  # the database away: look again later
                    log.warning("cannot look for new chains (%s); trying again later", one_line(exc))
            if now >= next_log:
                self._log_stats(last_counts, now - last_time)
                last_time, next_log = now, now + self.log_interval
        return self.shutdown(flush_timeout)

    def shutdown(self, flush_timeout: float = 5.0) -> RunReport:
        self.stop.set()
        for thread in [*self.workers, *self.backfillers]:
            thread.join(timeout=5)
        undelivered = self.writer.close(flush_timeout)
        if undelivered:
            log.error(
                "%d received entries could not be delivered to Redis before exit; the next start records "
                "their heights as a gap",
                undelivered,
            )
        return RunReport(self.writer.stats.delivered, undelivered, dict(self.writer.stats.per_chain))

    def _log_stats(self, last_counts: dict[str, int], elapsed: float) -> None:
        for w in self.workers:
            c = w.counters
            rate = (c.events - last_counts[w.chain]) / max(elapsed, 1e-6)
            last_counts[w.chain] = c.events
            log.info(
                "chain=%s endpoint=%s height=%s events=%d rate=%.0f/s reconnects=%d failovers=%d gaps=%d "
                "malformed=%d refused=%d errors=%s backfilled=%d buffered=%d",
                w.chain,
                w.out.endpoint or "-",
                w.last_height,
                c.events,
                rate,
                c.reconnects,
                c.failovers,
                c.gaps,
                c.malformed,
                c.refused,
                c.errors or "{}",
                next(b.filled for b in self.backfillers if b.chain == w.chain),
                self.writer.buffered,
            )
            self._check_lag(w.chain)

    def _check_lag(self, chain: str) -> None:
        """Warn loudly when the consumer lags close to the stream bound: trimming would lose data."""
        key = stream_key(chain)
        try:
            length = self.client.xlen(key)
            group = group_info(self.client, key) if length else None
        except redis.RedisError:
            return  # the writer reports Redis trouble
        unread = group.unread if group is not None and group.unread is not None else length
        if unread > 0.8 * self.maxlen:
            log.error(
                "chain=%s stream %s holds %d unread entries, %.0f%% of its bound %d: stream_events is not keeping "
                "up; entries beyond the bound are TRIMMED AND LOST. Start more stream_events consumers or raise "
                "CTOP_STREAM_MAXLEN.",
                chain,
                key,
                unread,
                100 * unread / self.maxlen,
                self.maxlen,
            )
