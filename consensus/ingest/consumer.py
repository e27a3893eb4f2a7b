"""StreamConsumer: the per-chain Redis Streams into PostgreSQL, at least once, idempotently.

Read with a consumer group; decode and persist a batch in one transaction; acknowledge only after
the commit. Entries a dead consumer left pending are claimed after an idle timeout. PostgreSQL
errors leave the batch unacknowledged and are retried with backoff; an entry that the database
itself refuses is dead-lettered alone so it never blocks the stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, close_old_connections, connection
from django.db.utils import DataError
from prometheus_client.core import Metric

from common import metrics
from common.backoff import Backoff
from common.text import first_line
from consensus.models import Chain
from consensus.partitions import PartitionCache
from consensus.streams import GROUP, group_info, stream_key

from .committer import Committer
from .decode import Batch, dead_row, decode_into
from .housekeeping import DeadLetterBudget, trim_acknowledged
from .publish import LivePublisher
from .store import ValidatorCache, persist

log = logging.getLogger("ctop.stream")

TRIM_EVERY = 10.0  # seconds between trims of acknowledged entries
LAG_FRESH = 60.0  # seconds a backlog reading stays worth serving as a metric


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class ChainStats:
    rows: int = 0
    entries: int = 0
    dead_letters: int = 0


@dataclass(frozen=True)
class Work:
    """Entries read from the streams, decoded: what store() persists and acknowledges as one."""

    entries: list[tuple[str, list]]  # (stream key, [(entry id, fields)])
    batch: Batch

    @property
    def size(self) -> int:
        return sum(len(items) for _, items in self.entries)


@dataclass
class Stats:
    batches: int = 0
    entries: int = 0
    claimed: int = 0
    db_errors: int = 0
    batch_seconds: float = 0.0
    per_chain: dict[str, ChainStats] = field(default_factory=dict)


class StreamConsumer:
    def __init__(
        self,
        chains: list[Chain],
        *,
        client: redis.Redis,
        consumer: str | None = None,
        count: int = 40,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        publisher: LivePublisher | None = None,
    ) -> None:
        self.chains = {stream_key(c.name): c for c in chains}
        self.client = client
        self.consumer = consumer or default_consumer_name()
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.publisher = publisher
        self.validators = ValidatorCache()
        self.partitions = PartitionCache()  # the vote partitions this consumer made sure of
        self.dead_letters = DeadLetterBudget()
        self.stats = Stats()
        self.stop = threading.Event()
        self._retry = Backoff(0.5, 30.0)  # while PostgreSQL is away
        self._own_pending = True  # after a start or a failure, first re-read what we hold unacknowledged
        self._next_claim = 0.0
        self.idle = False  # the last read of new entries found none
        self.batch_durations = metrics.Durations("ctop_stream_batch_seconds")
        # The streams' backlog as the loop last read it (every log interval): a scrape never waits
        # on Redis. (time.monotonic(), {chain: (unread, pending)})
        self.last_lag: tuple[float, dict[str, tuple[int | None, int]]] | None = None

    def add_chains(self, chains: list[Chain]) -> list[Chain]:
        """Start consuming chains that appeared since (added in the admin, registered by the
        subscriber); returns the new ones. A chain disabled later keeps being drained: its stream
        may still hold entries."""
        new = [c for c in chains if stream_key(c.name) not in self.chains]
        for c in new:
            self.chains[stream_key(c.name)] = c
        if new:
            self.ensure_groups([stream_key(c.name) for c in new])
            log.info("consumer %s now also streams %s", self.consumer, ", ".join(c.name for c in new))
        return new

    def ensure_groups(self, keys: list[str] | None = None) -> None:
        for key in keys if keys is not None else list(self.chains):
            try:
                # From the stream's beginning: entries written before the first stream_events run count too.
                self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # --- one unit of work: read() then store(); run_once() does both, run() pipelines them ---

    def run_once(self) -> int:
        """Read, persist and acknowledge one batch. Returns entries handled (0 if idle or failing)."""
        try:
            work = self.read()
        except redis.ResponseError as exc:
            if not self.heal(exc):
                raise
            return 0
        return self.store(work) if work is not None else 0

    def heal(self, exc: redis.RedisError) -> bool:
        """A stream or its group that vanished (Redis restarted without its data, or someone deleted
        the key) is made again, from the stream's start: entries written since are read, none is
        skipped. True if that was the trouble and it is mended."""
        if not isinstance(exc, redis.ResponseError) or "NOGROUP" not in str(exc):
            return False
        log.warning("a stream or its consumer group is gone (Redis restarted empty?); making them again")
        try:
            self.ensure_groups()
        except redis.RedisError as again:
            log.error("cannot make the consumer groups again (%s)", again)
            return False  # the caller's Redis-error path: it waits before trying again
        self._own_pending = True
        return True

    def read(self) -> Work | None:
        """The next unit of work, decoded: entries a stopped consumer left pending (when a claim is
        due and there are some), else those this consumer holds unacknowledged (after a start or a
        database failure), else new ones. None when there is nothing to do."""
        entries = self._claimable() or self._next_entries()
        if not any(items for _, items in entries):
            return None
        batch = Batch()
        for key, items in entries:
            chain = self.chains[key]
            for entry_id, fields in items:
                decode_into(batch, key, entry_id, fields, chain.pk, chain.name)
        return Work(entries, batch)

    def store(self, work: Work) -> int:
        """Persist a unit of work in one transaction, then acknowledge it. Returns the entries
        handled; 0 when PostgreSQL is away (nothing acknowledged: re-read once it is back). A batch
        the database refuses is retried entry by entry, and what it still refuses is dead-lettered."""
        started = time.monotonic()
        work.batch.dead = self.dead_letters.admit(work.batch.dead)
        try:
            persist(work.batch, self.validators, self.partitions)
        except (OperationalError, InterfaceError) as exc:
            return self._database_unavailable(exc)
        except (IntegrityError, DataError, DatabaseError) as exc:
            log.error("batch refused by the database (%s); retrying entry by entry", exc)
            self.validators.forget()
            return self._one_by_one(work.entries)
        self._ack(work.entries)
        self._retry.reset()
        self.after_commit(work, time.monotonic() - started)
        return work.size

    def reread_pending(self) -> None:
        """Read what this consumer holds unacknowledged first (after a failure: it was not stored)."""
        self._own_pending = True

    def after_commit(self, work: Work, seconds: float) -> None:
        """What follows a commit: the counters, then the live pages' update (best effort)."""
        self._account(work, seconds)
        if self.publisher:
            names = {c.pk: c.name for c in self.chains.values()}
            for chain_id, (height, round_) in work.batch.newest.items():
                self.publisher.publish(names[chain_id], height, round_)

    def _claimable(self) -> list[tuple[str, list]]:
        """Entries another consumer left unacknowledged for longer than claim_idle_ms, taken over
        (looked for every claim_idle/4, at least every second)."""
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + max(1.0, self.claim_idle_ms / 4000)
        out = []
        for key in self.chains:
            try:
                _, items, _ = self.client.xautoclaim(
                    key, GROUP, self.consumer, min_idle_time=self.claim_idle_ms, start_id="0-0", count=self.count
                )
            except redis.ResponseError:
                continue
            items = [(i, f) for i, f in items if f]
            if items:
                log.warning("claimed %d entries of %s left pending by a stopped consumer", len(items), key)
                self.stats.claimed += len(items)
                out.append((key, items))
        return out

    def _next_entries(self) -> list[tuple[str, list]]:
        if self._own_pending:
            streams = {key: "0" for key in self.chains}
            block = None
        else:
            streams = {key: ">" for key in self.chains}
            block = self.block_ms
        reply = self.client.xreadgroup(GROUP, self.consumer, streams, count=self.count, block=block)
        entries = [(key.decode() if isinstance(key, bytes) else key, items) for key, items in reply or []]
        entries = [(k, [(i, f) for i, f in items if f]) for k, items in entries]  # trimmed entries have no fields
        if self._own_pending and not any(items for _, items in entries):
            self._own_pending = False
            return []
        self.idle = not self._own_pending and not any(items for _, items in entries)
        return entries

    def _one_by_one(self, entries: list[tuple[str, list]]) -> int:
        done = 0
        for key, items in entries:
            chain = self.chains[key]
            for item in items:
                one = Work([(key, [item])], Batch())
                decode_into(one.batch, key, item[0], item[1], chain.pk, chain.name)
                try:
                    persist(one.batch, self.validators, self.partitions)
                except (OperationalError, InterfaceError) as exc:
                    return self._database_unavailable(exc)
                except DatabaseError as exc:
                    entry_id = item[0].decode() if isinstance(item[0], bytes) else str(item[0])
                    letter = Batch(
                        dead=[dead_row(chain.pk, key, entry_id, -1, str(item[1]), f"refused by the database: {exc}")]
                    )
                    persist(letter, self.validators, self.partitions)
                    one = Work(one.entries, letter)
                self._ack(one.entries)
                self.after_commit(one, 0.0)
                done += 1
        return done

    def _database_unavailable(self, exc: Exception) -> int:
        self.stats.db_errors += 1
        self.reread_pending()  # what we read stays pending; it is re-read once PostgreSQL is back
        delay = self._retry.next()
        log.error(
            "PostgreSQL unavailable (%s); nothing acknowledged; retrying in %.1fs",
            first_line(exc),
            delay,
        )
        with contextlib.suppress(DatabaseError):
            connection.close()
        self.stop.wait(delay)
        return 0

    def _ack(self, entries: list[tuple[str, list]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, items in entries:
            pipe.xack(key, GROUP, *[i for i, _ in items])
        pipe.execute()

    def _account(self, work: Work, seconds: float) -> None:
        self.stats.batches += 1
        self.stats.batch_seconds += seconds
        self.batch_durations.observe(seconds)
        self.stats.entries += work.size
        by_id = {c.pk: c.name for c in self.chains.values()}
        for key, items in work.entries:
            self.stats.per_chain.setdefault(self.chains[key].name, ChainStats()).entries += len(items)
        batch = work.batch
        rows = Counter(v.chain_id for v in batch.votes) + Counter(k[0] for k in batch.rounds)
        rows += Counter(k[0] for k in batch.steps) + Counter(k[0] for k in batch.commit_sigs)
        for chain_id, n in rows.items():
            self.stats.per_chain.setdefault(by_id[chain_id], ChainStats()).rows += n
        for row in batch.dead:
            if row.chain_id in by_id:
                self.stats.per_chain.setdefault(by_id[row.chain_id], ChainStats()).dead_letters += 1

    # --- the loop ---

    def lag(self) -> dict[str, tuple[int | None, int]]:
        """Per chain: entries not yet read by the group (None if Redis cannot tell) and entries pending."""
        out = {}
        for key, chain in list(self.chains.items()):  # add_chains may add one meanwhile
            try:
                group = group_info(self.client, key)
            except redis.RedisError:
                continue
            if group is not None:
                out[chain.name] = (group.unread, group.pending)
        self.last_lag = (time.monotonic(), out)
        return out

    def metrics(self) -> Iterator[Metric]:
        """Its stats and the streams' backlog, for --metrics-port (common.metrics.PIPELINE)."""
        entries, rows, dead = (
            metrics.counter(n) for n in ("ctop_stream_entries", "ctop_stream_rows", "ctop_stream_dead_letters")
        )
        # Every chain from 0 on, so that its first dead letter is an increase Prometheus sees.
        per_chain = dict(self.stats.per_chain)
        for name in sorted({c.name for c in list(self.chains.values())} | set(per_chain)):
            s = per_chain.get(name, ChainStats())
            entries.add_metric([name], s.entries)
            rows.add_metric([name], s.rows)
            dead.add_metric([name], s.dead_letters)
        errors = metrics.counter("ctop_stream_database_errors")
        errors.add_metric([], self.stats.db_errors)
        yield from (entries, rows, dead, errors, self.batch_durations.family())
        unread, pending = metrics.gauge("ctop_stream_unread_entries"), metrics.gauge("ctop_stream_pending_entries")
        read_at, lags = self.last_lag or (0.0, {})
        if time.monotonic() - read_at < LAG_FRESH:  # a backlog read long ago is not today's: no series
            for name, (n_unread, n_pending) in sorted(lags.items()):
                if n_unread is not None:  # Redis 7 says; older ones cannot
                    unread.add_metric([name], n_unread)
                pending.add_metric([name], n_pending)
        yield from (unread, pending)

    def drained(self) -> bool:
        """Nothing left for the group in any stream: no entry unread and none pending (not even
        entries a dead consumer still holds: they are claimed after --claim-idle and stored)."""
        lags = self.lag()
        return len(lags) == len(self.chains) and all(not unread and not pending for unread, pending in lags.values())

    def run(
        self,
        *,
        log_interval: float = 10.0,
        max_entries: int | None = None,
        idle_exit: bool = False,
        pipelined: bool = True,
        chains: Callable[[], list[Chain]] | None = None,
        refresh_every: float = 5.0,
    ) -> Stats:
        """Loop until stopped. Pipelined: this thread reads and decodes the next batch while a second
        thread commits the previous one (PostgreSQL's time and Python's overlap). `chains`: where to
        look for chains added later (every `refresh_every` seconds). `idle_exit`: return once the
        streams are drained, unread and pending alike."""
        self.ensure_groups()
        self.lag()  # the backlog at the start, for the metrics (then every few seconds)
        committer = Committer(self.store, self.stop) if pipelined else None
        next_refresh = time.monotonic() + refresh_every
        next_trim = time.monotonic() + TRIM_EVERY
        next_log = time.monotonic() + log_interval
        last: dict[str, int] = {}
        last_time = time.monotonic()
        try:
            while not self.stop.is_set():
                try:
                    handled = self.run_once() if committer is None else self._pipelined_step(committer)
                except redis.RedisError as exc:
                    if self.heal(exc):
                        continue
                    log.error("Redis unavailable (%s); retrying", exc)
                    self.stop.wait(1.0)
                    self.reread_pending()
                    continue
                if max_entries is not None and self.stats.entries >= max_entries:
                    break
                if (
                    idle_exit
                    and not handled
                    and self.idle
                    and (committer is None or committer.drained())
                    and self.drained()
                ):
                    break
                now = time.monotonic()
                if chains is not None and now >= next_refresh:
                    next_refresh = now + refresh_every
                    try:
                        self.add_chains(chains())
                    except DatabaseError as exc:
                        log.warning("cannot look for new chains (%s); trying again later", first_line(exc))
                        close_old_connections()
                if now >= next_trim:
                    next_trim = now + TRIM_EVERY
                    try:
                        for key in self.chains:
                            trim_acknowledged(self.client, key)
                    except redis.RedisError as exc:
                        log.warning("cannot trim acknowledged entries (%s)", first_line(exc))
                    if log_interval > TRIM_EVERY:
                        self.lag()  # the backlog for the metrics, fresh whatever the log interval
                if now >= next_log:
                    self._log(last, now - last_time)
                    last_time, next_log = now, now + log_interval
        finally:
            if committer is not None:
                committer.close()
        return self.stats

    def _pipelined_step(self, committer: Committer) -> int:
        """Read and decode the next unit of work while the committer stores the previous one."""
        if committer.take_failure():
            self.reread_pending()
        work = self.read()
        if work is None:
            return 0
        committer.submit(work)
        return work.size

    def _log(self, last: dict[str, int], elapsed: float) -> None:
        lags = self.lag()
        avg = self.stats.batch_seconds / self.stats.batches * 1000 if self.stats.batches else 0.0
        for name, s in self.stats.per_chain.items():
            unread, pending = lags.get(name, (None, 0))
            rate = (s.rows - last.get(name, 0)) / max(elapsed, 1e-6)
            last[name] = s.rows
            log.info(
                "chain=%s rows=%d rate=%.0f/s batch_latency=%.1fms unread=%s pending=%d dead_letters=%d",
                name,
                s.rows,
                rate,
                avg,
                "?" if unread is None else unread,
                pending,
                s.dead_letters,
            )
