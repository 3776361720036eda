"""deploy/alerts.yml: valid Prometheus rules (promtool, where installed: `make install`
adds the Debian package prometheus, which ships it), whose behaviour on sample series is
pinned by deploy/alerts.test.yml, and whose expressions name only metrics raymall
exports. The dashboard shows the metrics the operations issue asked for."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_deploy_files import _exported_names

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def _rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    out = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@needs_promtool
def test_alerts_fire_as_their_unit_tests_say() -> None:
    out = subprocess.run(
        [str(PROMTOOL), "test", "rules", "alerts.test.yml"],
        capture_output=True,
        text=True,
        cwd=ROOT / "deploy",
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_metric_an_alert_names_is_exported() -> None:
    names = {m for rule in _rules() for m in re.findall(r"\b(raymall_[a-z_]+)", rule["expr"])}
    assert names, "no alert names a raymall metric"
    missing = names - _exported_names()
    assert not missing, f"alerts name metrics that raymall does not export: {missing}"


def test_the_asked_for_alerts_exist_with_a_severity_and_a_summary() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    exprs = " ".join(rule["expr"] for rule in rules.values())
    for metric in (
        'raymall_http_requests_total{status=~"5.."}',  # error rate
        "raymall_http_request_duration_seconds_bucket",  # p95 by route
        "raymall_outbox_lag_seconds",
        "raymall_consumer_dead_letters_total",
        "raymall_actor_restarts_total",
        "raymall_inventory_low_stock_skus",
    ):
        assert metric in exprs, f"no alert on {metric}"
    assert "by (le, route)" in rules["RaymallSlowRoute"]["expr"]
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"page", "warn", "info"}, name
        assert rule["annotations"]["summary"], name


def test_prometheus_loads_the_rules_that_compose_mounts() -> None:
    prom = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = dict(
        v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"] if ":" in v
    )
    assert mounts["./deploy/alerts.yml"] in prom["rule_files"]


def test_the_dashboard_shows_the_operations_metrics() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/raymall.json").read_text())
    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p["targets"])
    for metric in (
        "raymall_consumer_retries_total",
        "raymall_consumer_dead_letters_total",
        "raymall_actor_restarts_total",
        "raymall_group_commit_queue_ops",
        "raymall_availability_lag_seconds",
        "raymall_login_failures_total",
        "raymall_inventory_low_stock_skus",
        "raymall_gc_pause_seconds",
        "raymall_gc_seconds_total",
    ):
        assert metric in exprs, f"the dashboard does not show {metric}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
