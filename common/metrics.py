"""Pipeline metrics: what each long-running command (subscribe_events, stream_events,
index_validators, analyze) exposes on its own `--metrics-port`, for Prometheus.

Each command already keeps its counts (the subscriber's Counters, the consumer's Stats, ...); a
collector reads them when Prometheus scrapes, so the hot path adds next to nothing (a count by
event type, a histogram observation per batch) and nothing is counted twice. The catalogue below
is the one list of names: the collectors build their families from it, and the tests check the
Grafana dashboard and the alerting rules against it.

The server listens on 127.0.0.1 unless told otherwise (`--metrics-host`): a process's metrics name
every chain it watches, so they are not public by default; put a reverse proxy with
authentication in front, or a firewall, to scrape across hosts.
"""

from __future__ import annotations

import argparse
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

log = logging.getLogger("ctop")


@dataclass(frozen=True)
class Spec:
    kind: str  # "counter" | "gauge" | "histogram" | "info"
    labels: tuple[str, ...]
    help: str


# name (without a counter's _total) -> what it is. The command exposing it is the name's second word.
PIPELINE: dict[str, Spec] = {
    "ctop_subscriber_events": Spec(
        "counter",
        ("chain", "type"),
        "Consensus events received (type: Vote, NewRound, RoundState, CompleteProposal, ...).",
    ),
    "ctop_subscriber_reconnects": Spec("counter", ("chain",), "Websocket sessions that ended and were opened again."),
    "ctop_subscriber_failovers": Spec("counter", ("chain",), "Switches to another endpoint of the chain."),
    "ctop_subscriber_gaps": Spec(
        "counter", ("chain",), "Runs of heights ctop did not fully see (recorded as gaps, backfilled from commits)."
    ),
    "ctop_subscriber_malformed_frames": Spec(
        "counter", ("chain",), "Frames that did not decode (forwarded; stream_events dead-letters them)."
    ),
    "ctop_subscriber_refused_frames": Spec("counter", ("chain",), "Frames refused for an implausible height."),
    "ctop_subscriber_height": Spec("gauge", ("chain",), "Latest height the subscriber has seen on the feed."),
    "ctop_stream_entries": Spec("counter", ("chain",), "Stream entries stored and acknowledged."),
    "ctop_stream_rows": Spec(
        "counter", ("chain",), "Rows written to PostgreSQL (votes, rounds, steps, commit signatures)."
    ),
    "ctop_stream_dead_letters": Spec(
        "counter", ("chain",), "Frames or entries that could not be decoded, kept as dead letters."
    ),
    "ctop_stream_database_errors": Spec(
        "counter", (), "Batches lost with PostgreSQL's connection (retried; nothing acknowledged)."
    ),
    "ctop_stream_unread_entries": Spec(
        "gauge", ("chain",), "Entries in the chain's Redis stream not read by the group yet."
    ),
    "ctop_stream_pending_entries": Spec("gauge", ("chain",), "Entries read but not acknowledged yet."),
    "ctop_stream_batch_seconds": Spec("histogram", (), "Time to store and acknowledge one batch."),
    "ctop_indexer_passes": Spec("counter", ("chain", "result"), "Validator-set indexing passes (result: ok, error)."),
    "ctop_analyzer_tick_seconds": Spec(
        "histogram", (), "Time of one analyzer tick (judging every chain, evaluating every rule)."
    ),
    "ctop_analyzer_heights_judged": Spec("counter", (), "Heights judged."),
    "ctop_notifications": Spec(
        "counter", ("kind", "result"), "Notification deliveries (kind: webhook, slack, ...; result: sent, failed)."
    ),
    "ctop_process": Spec("info", ("command",), "The ctop command this process runs."),
}

# Seconds: a batch or a tick is milliseconds when healthy, seconds when PostgreSQL struggles.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def counter(name: str) -> CounterMetricFamily:
    spec = PIPELINE[name]
    return CounterMetricFamily(name, spec.help, labels=list(spec.labels))


def gauge(name: str) -> GaugeMetricFamily:
    spec = PIPELINE[name]
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


class Durations:
    """A histogram kept by the process (no registry of its own: a collector yields it)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()  # a scrape (another thread) never sees a torn histogram
        self.counts = [0] * len(BUCKETS)
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        with self._lock:
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.counts[i] += 1
            self.count += 1
            self.sum += seconds

    def family(self) -> Metric:
        with self._lock:
            buckets = [(str(b), c) for b, c in zip(BUCKETS, self.counts, strict=True)] + [("+Inf", self.count)]
            total = self.sum
        return HistogramMetricFamily(self.name, PIPELINE[self.name].help, buckets=buckets, sum_value=total)


class Pipeline(Collector):
    """The process's own figures, from `collect`: a function returning the metric families."""

    def __init__(self, command: str, collect: Callable[[], Iterable[Metric]]) -> None:
        self.command = command
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        # A failure is not hidden: prometheus_client answers the scrape with 500 (the process goes
        # on), Prometheus marks the target down, and the rules say so. A partial page would not.
        info = InfoMetricFamily("ctop_process", PIPELINE["ctop_process"].help, labels=["command"])
        info.add_metric([self.command], {})
        yield info
        yield from self._collect()


def port_number(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r} (0-65535; 0 = off)")
    return n


class Later:
    """The figures of an object made later (a runner, once PostgreSQL and the chains are there):
    until then a scrape gets the process's own figures only, so a process that waits is up, not
    down."""

    def __init__(self) -> None:
        self.source = None  # anything with a metrics() method

    def __call__(self) -> Iterable[Metric]:
        return self.source.metrics() if self.source is not None else []


def add_arguments(parser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        default=0,
        help="Serve this process's metrics for Prometheus on this port (default 0: off).",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="Address the metrics server listens on (default 127.0.0.1: this host only).",
    )


def serve(command: str, collect: Callable[[], Iterable[Metric]], port: int, host: str = "127.0.0.1") -> None:
    """Start the metrics server in a daemon thread (port 0: nothing). Its own registry: the
    process's figures, process_start_time_seconds and friends, and nothing else."""
    if not port:
        return
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(Pipeline(command, collect))
    try:
        start_http_server(port, addr=host, registry=registry)
    except (OSError, ValueError, OverflowError) as exc:  # taken, or a host name that does not resolve
        # The work matters more than its metrics: the process goes on, and Prometheus sees the
        # target down (up == 0), which the rules alert on.
        log.error("%s: cannot serve metrics on %s:%d (%s); running without them", command, host, port, exc)
        return
    log.info("%s: metrics on http://%s:%d/metrics", command, host, port)
