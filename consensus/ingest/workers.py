"""Several consumer processes under one `stream_events` command (`--workers N`).

One process stores ~37,000 votes/s on 2 cores: it is bound by Python (decoding frames, building
COPY rows) under the GIL. N processes on the same consumer group share the entries one by one, each
with its own connections, exactly as N separately started commands would (the multi-consumer path is
what the fault tests cover); this module only starts, watches and stops them.

The parent forwards SIGTERM/SIGINT to every worker, which finishes its batch, commits, acknowledges
and exits 0. A worker that dies otherwise is restarted with exponential backoff (its unacknowledged
entries are re-read by its successor, which has the same consumer name). A worker that exits 0 on
its own (--until-idle, --max-entries) is not restarted.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable

from django.db import connections

from common.backoff import exponential
from common.commands import StopSignals

log = logging.getLogger("ctop.stream")


def supervise(n: int, work: Callable[[int], int], *, backoff_max: float = 30.0) -> int:
    """Run `work(i)` for i in 0..n-1, each in a forked process; return the exit status (0 if every
    worker exited 0). `work` returns the worker's exit status."""
    ctx = multiprocessing.get_context("fork")
    connections.close_all()  # never share a database socket with the children
    procs: dict[int, multiprocessing.process.BaseProcess] = {}
    restart_at: dict[int, float] = {}
    restarts: dict[int, int] = {}

    def child(i: int) -> None:
        # The worker installs its own graceful handlers; until then, the defaults.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        raise SystemExit(work(i))

    def start(i: int) -> None:
        p = ctx.Process(target=child, args=(i,), name=f"stream-worker-{i}")
        p.start()
        procs[i] = p
        log.info("stream worker %d started: pid %d", i, p.pid)  # which process to look at (or kill)

    signals = StopSignals()  # stopping from the first on

    def forward(signum, frame) -> None:
        seen = signals.arrived()
        if seen == StopSignals.REPEAT:
            return  # the same stop delivered twice (see common.commands)
        if seen == StopSignals.SECOND:
            log.warning("second signal: stopping the workers now")
            for p in procs.values():
                if p.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
            return
        log.info("received %s; each worker finishes its batch and exits", signal.Signals(signum).name)
        for p in procs.values():
            if p.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for i in range(n):
        start(i)
    status = 0
    while procs or restart_at:
        for i, p in list(procs.items()):
            p.join(timeout=0.1)
            if p.exitcode is None:
                continue
            del procs[i]
            if p.exitcode == 0:
                continue
            if signals.stopping:
                status = 1
                continue
            restarts[i] = restarts.get(i, 0) + 1
            delay = exponential(restarts[i], base=0.5, cap=backoff_max, jitter=False)
            log.error("stream worker %d exited with status %s; restarting it in %.1fs", i, p.exitcode, delay)
            restart_at[i] = time.monotonic() + delay
        for i, when in list(restart_at.items()):
            if signals.stopping:
                restart_at.clear()
            elif time.monotonic() >= when:
                del restart_at[i]
                start(i)
        if not procs:
            time.sleep(0.1)
    return status
