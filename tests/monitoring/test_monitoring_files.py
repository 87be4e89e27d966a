"""The dashboard and the alert rules in deploy/: Prometheus' own promtool checks and
unit-tests the rules and parses every dashboard query, and every metric and label value they
use is one a real daemon's /metrics exports."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import parts
import pytest
import yaml
from daemon_harness import query, start_watch, write_config
from helpers_processes import wait_until
from prometheus_client.parser import text_string_to_metric_families

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus-alerts.yaml"
ALERT_TESTS = DEPLOY / "prometheus-alerts.test.yaml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
# A metric name and, when it has one, its {label matchers}.
SELECTOR = re.compile(r"\b(ffrtmp_[a-z_]+)(\{[^}]*\})?")
EXACT_MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
LABELS_PROMETHEUS_ADDS = {"job", "instance"}


@pytest.fixture
def promtool() -> str:
    """Skipped only where promtool is missing outside CI; under CI a missing one fails."""
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed; .ci/run installs Debian's prometheus package")
        parts.skip(parts.ALERT_RULES, "promtool is not installed")
    return path


def alert_rules() -> list[dict]:
    return [
        rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]
    ]


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_promtool_checks_the_alert_rules(promtool):
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass(promtool):
    result = subprocess.run(
        [promtool, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_the_rules_define_has_a_unit_test():
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    wanted = {"FfrtmpScrapeFailing", "FfrtmpScrapeAbsent", "FfrtmpUnhealthy"}
    wanted |= {"FfrtmpUngovernedTargets", "FfrtmpDeadLetters", "FfrtmpAttachFailureRate"}
    assert wanted <= firing
    untested = {rule["alert"] for rule in alert_rules()} - tested
    # Two simple increase() thresholds carried over from the docs' examples are not tested.
    assert untested <= {"FfrtmpResourceErrors", "FfrtmpEventOverflows"}


def test_promtool_parses_every_dashboard_query(promtool, tmp_path):
    """Each query, with Grafana's variables filled in, as a recording rule promtool checks."""
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for i, expr in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_dashboard_panels_have_unique_ids_and_a_query_each():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_metric_and_label_value_queried_is_exported_by_a_real_daemon(
    tmp_path, db_path, spawn, real_cgroup_parent, transcoder
):
    port = free_port()
    config = write_config(tmp_path, transcoder, "usage_interval: 300ms\n")
    start_watch(spawn, db_path, config, real_cgroup_parent, "--http", f"127.0.0.1:{port}")
    child = spawn([transcoder, "60"])
    wait_until(
        lambda: query(db_path, "SELECT usage_sampled_at IS NOT NULL FROM processes WHERE pid = ?",
                      (child.pid,)) == [(1,)],
        what="the governed job sampled",
    )  # fmt: skip
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        exported = text_string_to_metric_families(response.read().decode())
        samples = [sample for family in exported for sample in family.samples]
    labels_of: dict[str, dict[str, set[str]]] = {}
    for sample in samples:
        for name in {sample.name, re.sub(r"_(bucket|count|sum|total)$", "", sample.name)}:
            known = labels_of.setdefault(name, {})
            for label, value in sample.labels.items():
                known.setdefault(label, set()).add(value)

    queries = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    used = [match for expr in queries for match in SELECTOR.finditer(expr)]
    assert {m.group(1) for m in used} >= {"ffrtmp_governed_cpu_seconds_total"}
    for match in used:
        name, matchers = match.group(1), match.group(2) or ""
        assert name in labels_of, f"{name} is queried but not exported"
        for label, value in EXACT_MATCHER.findall(matchers):
            if label in LABELS_PROMETHEUS_ADDS:
                continue
            assert label in labels_of[name], f"{name} has no label {label}"
            assert value in labels_of[name][label], f"{name}{{{label}={value!r}}} is never exported"
    for expr in queries:
        for label in re.findall(r"by \(([^)]*)\)", expr):
            for name in (m.group(1) for m in SELECTOR.finditer(expr)):
                for one in (part.strip() for part in label.split(",")):
                    assert one in LABELS_PROMETHEUS_ADDS | {"le"} | set(labels_of[name]), (
                        f"{expr!r} groups by {one}, which {name} does not have"
                    )
