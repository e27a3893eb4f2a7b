"""deploy/prometheus and deploy/grafana, checked by the real tools: promtool checks the
configuration and the rules and runs the rules' unit tests; every metric name the rules and the
dashboard query is one ctop really exports (the web /metrics scraped on a small scene, the pipeline
catalogue as prometheus_client exposes it, prometheus_client's process collector, and `up`); and
every dashboard query parses as PromQL (promtool, as recording rules)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from analysis.models import AlertKind
from analysis.runner import MissingVoteAnalyzer
from common import metrics
from consensus.models import Validator

from .analysishelpers import A, D, all_sign, play

ROOT = Path(__file__).resolve().parent.parent
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "ctop.json"
TOKEN = "scrape-token-for-tests"
PIPELINE_JOBS = {"ctop-subscriber": 9101, "ctop-stream": 9111, "ctop-indexer": 9103, "ctop-analyzer": 9104}
# The systemd units serve the ports Prometheus scrapes (ctop-stream@1 is 911%i with %i = 1).
UNITS = {
    "ctop-subscriber.service": "9101",
    "ctop-stream@.service": "911%i",
    "ctop-indexer.service": "9103",
    "ctop-analyzer.service": "9104",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not found (Debian: apt-get install --no-install-recommends prometheus; bin/test does it)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must check deploy/prometheus")
        pytest.skip(message)
    return path


def run(promtool: str, *args: str, cwd: Path = PROM) -> str:
    proc = subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def alerting_rules() -> list[dict]:
    return [rule for group in load(PROM / "ctop-rules.yml")["groups"] for rule in group["rules"]]


# --- PromQL: the metric names an expression reads ---

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "inf",
    "nan",
    "atan2",
}
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?\w+\s*\)\s*$", re.S)


def promql(query: str) -> str:
    """A Grafana query's PromQL: label_values(selector, label) -> selector; label_values(label) -> ""."""
    inner = _LABEL_VALUES.match(query)
    return (inner.group(1) or "") if inner else query


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's variables and label_values() too)."""
    text = _STRING.sub('""', promql(expr))
    text = _GRAFANA_VARIABLE.sub("1m", text)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)  # label names of by (...), on (...), group_left (...)
    return {m.group(1) for m in _WORD.finditer(text) if not m.group(2) and m.group(1) not in _KEYWORDS}


def test_the_name_extraction_finds_names_and_only_names():
    assert metric_names(
        "(ctop_validator_missed_prevote_heights > ctop_validator_missed_precommit_heights or ctop_a)"
        " / on (chain) group_left ctop_chain_window_heights"
        ' * on (chain, validator) group_left (moniker) ctop_validator_info{chain=~"$chain", x="a b"} > 1e-3'
    ) == {
        "ctop_validator_missed_prevote_heights",
        "ctop_validator_missed_precommit_heights",
        "ctop_a",
        "ctop_chain_window_heights",
        "ctop_validator_info",
    }
    assert metric_names(
        "histogram_quantile(0.95, sum by (instance, le) (rate(ctop_analyzer_tick_seconds_bucket[$__rate_interval])))"
        " > 5 unless up offset 5m"
    ) == {"ctop_analyzer_tick_seconds_bucket", "up"}
    assert metric_names('label_values(ctop_validator_info{chain=~"$chain"}, validator)') == {"ctop_validator_info"}
    assert metric_names("label_values(chain)") == set()


# --- what ctop exports, collected for real ---


def pipeline_names() -> set[str]:
    """The pipeline catalogue, expanded by type, and checked against prometheus_client's own
    exposition of it (what a --metrics-port serves): counters _total, histograms _bucket/_sum/_count,
    the info metric _info."""
    expanded = set()
    for name, spec in metrics.PIPELINE.items():
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"]}
        expanded |= {name + s for s in suffixes[spec.kind]}

    def families():
        for name, spec in metrics.PIPELINE.items():
            values = ["x"] * len(spec.labels)
            if spec.kind in ("counter", "gauge"):
                family = (metrics.counter if spec.kind == "counter" else metrics.gauge)(name)
                family.add_metric(values, 1)
                yield family
            elif spec.kind == "histogram":
                durations = metrics.Durations(name)
                durations.observe(0.02)
                yield durations.family()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.Pipeline("test", families))
    exposed = {s.name for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    assert exposed == expanded
    return exposed


def process_names() -> set[str]:
    return {s.name for family in ProcessCollector(registry=None).collect() for s in family.samples}


@pytest.fixture
def exported(net, settings) -> set[str]:
    """Every name ctop exports: the web /metrics scraped on a scene that has every family (D misses
    heights alone, so an alert is open; height 25 in progress), the pipeline's, the process
    collector's, and `up`."""
    settings.CTOP = {**settings.CTOP, "METRICS_TOKEN": TOKEN, "METRICS_WINDOW": 100}
    Validator.objects.filter(chain=net, address=A).update(moniker="alpha")
    for h in range(10, 25):
        votes = all_sign()
        if h < 20:
            del votes[0][D]
        play(net, h, votes)
    play(net, 25, {0: {A: ("S", "")}})
    MissingVoteAnalyzer([net], fetch_sets=False, fetch_commits=False).run_once()
    response = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/metrics")
    assert response.status_code == 200
    web = set()
    for family in text_string_to_metric_families(response.content.decode()):
        web |= {s.name for s in family.samples}
    # Every family of analysis/metrics.py has samples on this scene.
    assert {
        "ctop_chain_height",
        "ctop_chain_round",
        "ctop_chain_height_age_seconds",
        "ctop_chain_missing_prevote_power_ratio",
        "ctop_chain_rounds_per_height",
        "ctop_chain_latest_judged_height",
        "ctop_chain_window_heights",
        "ctop_validator_voting_power",
        "ctop_validator_in_active_set",
        "ctop_validator_missed_prevote_heights",
        "ctop_validator_missed_precommit_heights",
        "ctop_validator_solo_missed_heights",
        "ctop_validator_info",
        "ctop_alerts_open",
    } <= web
    processes = process_names()
    assert "process_start_time_seconds" in processes
    return web | pipeline_names() | processes | {"up"}


# --- Prometheus ---


def test_the_prometheus_configuration_is_valid(promtool, tmp_path):
    config = load(PROM / "prometheus.yml")
    assert config["rule_files"] == ["ctop-rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    web = jobs["ctop-web"]
    assert web["metrics_path"] == "/metrics"
    assert web["static_configs"] == [{"targets": ["127.0.0.1:8000"]}]
    assert web["authorization"]["type"] == "Bearer" and web["authorization"]["credentials_file"].startswith("/")
    for job, port in PIPELINE_JOBS.items():
        assert jobs[job]["static_configs"][0]["targets"] == [f"127.0.0.1:{port}"]
        assert "authorization" not in jobs[job]
    assert "alerting" not in config  # an example, commented out
    for unit, port in UNITS.items():
        assert f"--metrics-port {port}" in (ROOT / "deploy" / "systemd" / unit).read_text(), unit
    run(promtool, "check", "config", "--syntax-only", "prometheus.yml")
    # The full check opens the token file and the rule files: a copy with a token of its own.
    token = tmp_path / "ctop-metrics.token"
    token.write_text(TOKEN + "\n")
    web["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(PROM / "ctop-rules.yml", tmp_path / "ctop-rules.yml")
    out = run(promtool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS: 1 rule files found" in out, out


def test_the_rules_are_valid_and_say_what_and_how_bad(promtool):
    out = run(promtool, "check", "rules", "ctop-rules.yml")
    rules = alerting_rules()
    assert f"SUCCESS: {len(rules)} rules found" in out, out
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical", "{{ $labels.severity }}"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    # What the brief of each rule is: ctop's own alerts mirrored, and ctop blind or behind.
    assert {
        "CtopValidatorMissingVotes",
        "CtopHaltRisk",
        "CtopChainStalled",
        "CtopProcessDown",
        "CtopSubscriberHeightStuck",
        "CtopStreamBacklogGrowing",
        "CtopStreamDeadLetters",
        "CtopAnalyzerTicksSlow",
    } <= set(names)
    # The missed-votes rules name the validator by its moniker (ctop_validator_info's label).
    missing = next(rule for rule in rules if rule["alert"] == "CtopValidatorMissingVotes")
    assert "group_left (moniker) ctop_validator_info" in missing["expr"]
    assert "$labels.moniker" in missing["annotations"]["description"]
    # A kind the rules match on is one of ctop's alert kinds.
    for rule in rules:
        for kind in re.findall(r'kind="(\w+)"', rule["expr"]):
            assert kind in AlertKind.values, (rule["alert"], kind)


def test_the_rules_unit_tests_pass(promtool):
    out = run(promtool, "test", "rules", "ctop-rules.test.yml")
    assert "SUCCESS" in out, out
    tests = load(PROM / "ctop-rules.test.yml")
    assert tests["rule_files"] == ["ctop-rules.yml"]
    cases = [case for test in tests["tests"] for case in test["alert_rule_test"]]
    tested = {case["alertname"] for case in cases}
    assert len(tested) >= 8
    # Cases where nothing may fire (beside the exact lists of the others, which name every alert).
    assert any(case["exp_alerts"] == [] for case in cases)
    known = {rule["alert"] for rule in alerting_rules()}
    assert tested <= known


# --- Grafana ---


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, expression) of every panel target and every query variable."""
    queries = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                queries.append((f"panel {inner['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return queries


def test_the_dashboard_is_importable_and_queries_parse(promtool, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["uid"] and dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for name in ("chain", "validator"):
        assert variables[name]["query"]["query"].startswith("label_values("), name
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    assert {"timeseries", "table", "heatmap"} <= {p["type"] for p in panels}
    # Every query is PromQL: promtool parses them, as recording rules, with Grafana's variables set.
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries(dashboard)):
        query = re.sub(r"\$__(rate_)?interval|\$__range", "5m", promql(expr))
        query = re.sub(r"\$\{?(chain|validator)\}?", ".*", query)
        assert query.strip() and "$" not in query, where
        rules.append({"record": f"ctop:grafana:{i}", "expr": query})
    path = tmp_path / "grafana-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    run(promtool, "check", "rules", str(path), cwd=tmp_path)


# --- every name is one ctop exports ---


@pytest.mark.django_db
def test_every_metric_the_rules_and_the_dashboard_read_is_exported(exported):
    used: dict[str, set[str]] = {}
    for rule in alerting_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        used[f"rule {rule['alert']}"] = names
    for where, expr in dashboard_queries(json.loads(DASHBOARD.read_text())):
        names = metric_names(expr)
        assert names, where
        used[where] = names
    unknown = {where: sorted(names - exported) for where, names in used.items() if names - exported}
    assert not unknown, f"names ctop does not export: {unknown}"
    # The dashboard shows what the operator needs.
    shown = set().union(*(names for where, names in used.items() if not where.startswith("rule ")))
    assert {
        "ctop_chain_height",
        "ctop_chain_round",
        "ctop_chain_rounds_per_height",
        "ctop_chain_height_age_seconds",
        "ctop_validator_missed_prevote_heights",
        "ctop_validator_missed_precommit_heights",
        "ctop_chain_missing_prevote_power_ratio",
        "ctop_stream_unread_entries",
        "ctop_stream_pending_entries",
        "ctop_stream_dead_letters_total",
        "ctop_subscriber_events_total",
        "ctop_analyzer_tick_seconds_bucket",
    } <= shown
