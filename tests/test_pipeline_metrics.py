"""Pipeline metrics (common.metrics): each long-running command serves its own figures on
--metrics-port; they parse with prometheus_client's own parser and say what the process did; and a
real Prometheus (Debian's package, installed by bin/test) scrapes the four commands and the web
process's /metrics on loopback, and its HTTP API answers with the chain's height, rising."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from common import metrics
from consensus.models import Chain, Endpoint
from consensus.simulator import SimChain, SimulatorThread

from .procs import Command, command_env, free_port
from .subscriberhelpers import wait_until

PROMETHEUS = shutil.which("prometheus")


def test_histograms_are_cumulative_and_ports_are_checked():
    d = metrics.Durations("ctop_stream_batch_seconds")
    for seconds in (0.001, 0.02, 0.02, 3.0, 100.0):
        d.observe(seconds)
    family = d.family()
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert (buckets["0.005"], buckets["0.025"], buckets["5.0"], buckets["+Inf"]) == (1, 3, 4, 5)
    assert [s.value for s in family.samples if s.name.endswith("_count")] == [5]
    for bad in ("-1", "65536", "http", ""):
        with pytest.raises(Exception, match="not a port number"):
            metrics.port_number(bad)
    assert metrics.port_number("9101") == 9101


def test_a_port_in_use_is_logged_and_the_process_goes_on(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        metrics.serve("analyze", lambda: [], taken.getsockname()[1])
    assert "cannot serve metrics" in caplog.text and "running without them" in caplog.text


def scrape(port: int) -> dict[str, list]:
    """name -> samples, as Prometheus's own parser reads the page."""
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, (name, labels, sorted(samples))
    return sum(found)


def prometheus_query(port: int, query: str) -> list:
    reply = requests.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": query}, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_every_pipeline_command_serves_its_metrics_and_a_real_prometheus_scrapes_them(tmp_path, redis_client):
    if not PROMETHEUS and not os.environ.get("CI"):
        pytest.skip("apt install prometheus (bin/test and .ci/run do)")
    assert PROMETHEUS, "prometheus is not installed: bin/test installs Debian's package"
    sim = SimulatorThread()
    (node,) = sim.add_chain(SimChain("sim-m", validators=4, block_time=0.3))
    sim.start()
    chain = Chain.objects.create(name="sim-m", chain_id="sim-m")
    Endpoint.objects.create(chain=chain, url=node.url)
    ports = {name: free_port() for name in ("subscribe_events", "stream_events", "index_validators", "analyze")}
    web, prom = free_port(), free_port()
    token = "scrape-token-for-tests"
    env = command_env(CTOP_METRICS_TOKEN=token)
    args = {
        "subscribe_events": [],
        "stream_events": ["--no-live"],
        "index_validators": ["--poll-frequency", "5s"],
        "analyze": ["missing-votes", "--poll-frequency", "1s"],
    }
    procs = {name: Command(name, *args[name], "--metrics-port", str(port), env=env) for name, port in ports.items()}
    procs["web"] = Command("runserver", "--noreload", f"127.0.0.1:{web}", env=env)
    prometheus = None
    try:
        # Each command's own page: what it did, by Prometheus's own parser.
        def ready() -> bool:
            try:
                page = scrape(ports["analyze"])
            except requests.RequestException:
                return False
            # Served from the start, while it waits for its chains: the analyzer's own figures come later.
            judged = page.get("ctop_analyzer_heights_judged_total")
            return bool(judged) and judged[0].value >= 3

        wait_until(ready, timeout=60, interval=0.5, message="the analyzer judged heights")
        sub = scrape(ports["subscribe_events"])
        assert value(sub, "ctop_subscriber_events_total", chain="sim-m", type="Vote") > 0
        assert value(sub, "ctop_subscriber_events_total", chain="sim-m", type="NewRound") > 0
        assert value(sub, "ctop_subscriber_height", chain="sim-m") > 3
        assert value(sub, "ctop_process_info", command="subscribe_events") == 1
        assert value(sub, "process_start_time_seconds") > 0
        stream = scrape(ports["stream_events"])
        assert value(stream, "ctop_stream_rows_total", chain="sim-m") > 0
        assert value(stream, "ctop_stream_batch_seconds_count") > 0
        assert "ctop_stream_pending_entries" in stream and value(stream, "ctop_stream_dead_letters_total") == 0
        assert value(scrape(ports["index_validators"]), "ctop_indexer_passes_total", chain="sim-m", result="ok") >= 1
        assert value(scrape(ports["analyze"]), "ctop_analyzer_tick_seconds_count") >= 1

        # A real Prometheus scrapes all five on loopback, the web's /metrics with the bearer token.
        (tmp_path / "token").write_text(token)
        targets = ", ".join(f"'127.0.0.1:{p}'" for p in ports.values())
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: ctop-pipeline\n    static_configs: [{{targets: [{targets}]}}]\n"
            f"  - job_name: ctop-web\n    authorization: {{credentials_file: {tmp_path / 'token'}}}\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{web}']}}]\n"
        )
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def heights() -> list:
            try:
                return prometheus_query(prom, 'ctop_chain_height{chain="sim-m"}')
            except (requests.RequestException, ValueError):
                return []

        first = wait_until(heights, timeout=60, interval=1.0, message="Prometheus has the chain's height")
        h0 = float(first[0]["value"][1])
        wait_until(lambda: float((heights() or first)[0]["value"][1]) > h0, timeout=30, message="the height rises")
        up = {r["metric"]["instance"]: r["value"][1] for r in prometheus_query(prom, "up")}
        assert len(up) == 5 and set(up.values()) == {"1"}, up
        votes = 'rate(ctop_subscriber_events_total{chain="sim-m",type="Vote"}[30s]) > 0'
        wait_until(lambda: prometheus_query(prom, votes), timeout=30, message="a rate of votes")
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(20)
        for proc in procs.values():
            proc.proc.send_signal(signal.SIGTERM)
        codes = {name: proc.wait(30) for name, proc in procs.items()}
        sim.stop()
    logs = {name: proc.text[-2000:] for name, proc in procs.items()}
    assert all(code == 0 for name, code in codes.items() if name != "web"), logs


def exposition(source) -> dict[str, list]:
    """What a scrape of a process serving `source.metrics()` reads, through prometheus_client's own
    formatter and parser."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Pipeline("test", source.metrics))
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


@pytest.mark.django_db(transaction=True)
def test_the_stream_consumers_figures_start_at_zero_and_count_what_it_stored(chain, redis_client):
    from .protocol_fixtures import frames
    from .streamhelpers import consumer, drain, fill

    c = consumer(chain, redis_client, block_ms=50)
    page = exposition(c)
    assert value(page, "ctop_stream_dead_letters_total", chain="testnet") == 0  # a series from the start
    assert "ctop_stream_unread_entries" not in page  # no backlog read yet: no series, not a stale one
    fill(redis_client, chain.name, list(frames("ws_frames_normal.jsonl")))
    drain(c)
    c.lag()
    page = exposition(c)
    assert value(page, "ctop_stream_rows_total", chain="testnet") > 0
    assert value(page, "ctop_stream_entries_total", chain="testnet") == c.stats.entries
    assert value(page, "ctop_stream_pending_entries", chain="testnet") == 0
    assert value(page, "ctop_stream_batch_seconds_count") == c.stats.batches
    assert value(page, "ctop_stream_batch_seconds_bucket", le="+Inf") == c.stats.batches


@pytest.mark.django_db(transaction=True)
def test_the_indexer_and_the_analyzers_figures(net, redis_client):
    from analysis.runner import MissingVoteAnalyzer
    from validators.runner import IndexerRunner

    from .analysishelpers import all_sign, play

    # The chain's only endpoint (127.0.0.1:1) refuses: one failed pass, counted from 0.
    runner = IndexerRunner(lambda: [net], interval=60)
    runner.run_once(timeout=30)
    page = exposition(runner)
    assert value(page, "ctop_indexer_passes_total", chain="testnet", result="error") == 1
    assert value(page, "ctop_indexer_passes_total", chain="testnet", result="ok") == 0

    for h in (1, 2, 3):
        play(net, h, all_sign())
    analyzer = MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False)
    try:
        judged = analyzer.run_once()
        page = exposition(analyzer)
    finally:
        analyzer.close()
    assert judged >= 1 and value(page, "ctop_analyzer_heights_judged_total") == judged
    assert value(page, "ctop_analyzer_tick_seconds_count") == 1
    # Every kind and result has its series, from 0 on (DELIVERIES counts for the whole process).
    from analysis import notify
    from analysis.models import ChannelKind

    for kind in ChannelKind.values:
        for result in ("sent", "failed"):
            assert value(page, "ctop_notifications_total", kind=kind, result=result) == notify.DELIVERIES.get(
                (kind, result), 0
            )
    assert value(page, "ctop_process_info", command="test") == 1


def test_a_failing_collector_is_a_failed_scrape_not_a_partial_page():
    from prometheus_client import CollectorRegistry, generate_latest

    def broken():
        yield metrics.counter("ctop_stream_rows")
        raise KeyError("a misspelt name")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Pipeline("test", broken))
    with pytest.raises(KeyError):
        generate_latest(registry)  # the HTTP server answers 500: Prometheus marks the target down


def test_stream_workers_metrics_ports_must_all_be_ports():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="must be a port number") as raised:
        call_command("stream_events", "--workers", "2", "--metrics-port", "65535")
    assert raised.value.returncode == 2  # input that can never become valid
