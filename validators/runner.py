"""IndexerRunner: every chain's validator-set indexing on its own schedule, each chain a job of its
own in a small pool, so one chain's slow or broken endpoint never delays another chain's sets.

A chain's failure (an endpoint that lies, drips or answers nonsense, a malformed REST reply, a
bug) is logged with the chain's name and recorded on its SetIndexState; the other chains go on.
The management command is a thin shell around this; tests drive it directly.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

from django.db import DatabaseError
from django.utils import timezone
from prometheus_client.core import Metric

from common import metrics
from common.pool import KeyedPool
from common.text import one_line
from consensus.models import Chain

from .indexer import ChainIndexer, IndexerError
from .models import SetIndexState
from .status import NO_REST, refresh_status

log = logging.getLogger("ctop.indexer")


def index_chain(chain: Chain, *, sets: bool = True, status: bool = True) -> bool:
    """One pass over one chain: its set, then its validators' status and monikers from the REST API
    (each when asked); False if anything failed (recorded)."""
    if sets:
        try:
            ChainIndexer(chain).run_once()
        except IndexerError:
            return False  # logged and recorded by the indexer; the history is untouched
    if not status:
        return True
    try:
        read = refresh_status(chain)
    except IndexerError as exc:
        log.warning("%s: %s", chain.name, exc)
        _record_error(chain, str(exc))
        return False
    if read.changed:
        log.info("%s: %d validator status change(s)", chain.name, read.changed)
    return read.slashing_error in ("", NO_REST)


def _record_error(chain: Chain, message: str) -> None:
    with contextlib.suppress(DatabaseError):  # the database away: the log says it
        SetIndexState.objects.filter(chain=chain).update(
            last_error=one_line(message, 2000), last_error_at=timezone.now()
        )


class IndexerRunner:
    """status_interval: how often the REST status (jail risk's counters) is read; default the
    sets' interval. A pass does whichever of the two is due."""

    def __init__(
        self,
        chains: Callable[[], list[Chain]],
        *,
        interval: float,
        workers: int = 4,
        status_interval: float | None = None,
    ) -> None:
        self.chains = chains
        self.interval = interval
        self.status_interval = status_interval if status_interval is not None else interval
        self.pool = KeyedPool(workers, "indexer")
        self.failures: dict[int, bool] = {}
        self.passes: Counter[tuple[str, str]] = Counter()  # (chain name, "ok" | "error")
        self._due: dict[int, float] = {}
        self._status_due: dict[int, float] = {}

    def _job(self, chain: Chain, *, sets: bool = True, status: bool = True) -> Callable[[], None]:
        def run() -> None:
            ok = False
            try:
                ok = index_chain(chain, sets=sets, status=status)
            except Exception as exc:
                log.exception("%s: indexing failed unexpectedly", chain.name)
                _record_error(chain, f"unexpected {type(exc).__name__}: {exc}")
            self.failures[chain.pk] = not ok
            self.passes[(chain.name, "ok" if ok else "error")] += 1

        return run

    def metrics(self) -> Iterator[Metric]:
        """Its passes, for --metrics-port (common.metrics.PIPELINE)."""
        passes = metrics.counter("ctop_indexer_passes")
        for (name, result), n in sorted(dict(self.passes).items()):
            passes.add_metric([name, result], n)
        yield passes

    def tick(self) -> None:
        """Start a pass for every chain that is due and not still busy with the last one."""
        now = time.monotonic()
        for chain in self.chains():
            for result in ("ok", "error"):  # from 0 on: a first failure is an increase Prometheus sees
                self.passes.setdefault((chain.name, result), 0)
            sets = now >= self._due.get(chain.pk, 0.0)
            status = now >= self._status_due.get(chain.pk, 0.0)
            if (sets or status) and self.pool.submit(
                chain.pk, self._job(chain, sets=sets, status=status), what=f"{chain.name}: indexing"
            ):
                if sets:
                    self._due[chain.pk] = now + self.interval
                if status:
                    self._status_due[chain.pk] = now + self.status_interval

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except DatabaseError as exc:
                log.error("cannot list the chains (%s); retrying", one_line(exc))
            stop.wait(1.0)
        self.pool.shutdown(wait=True)

    def run_once(self, timeout: float | None = None) -> int:
        """One pass over every chain, in parallel; returns how many failed."""
        self.tick()
        self.pool.wait(timeout)
        self.pool.shutdown(wait=True)
        return sum(self.failures.values())
