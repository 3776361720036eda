"""docker-compose.yml, the Dockerfile, cluster.yaml and the Grafana dashboard cannot run
here (no Docker engine, no cluster), so these tests parse them and check that they agree
with the code: settings names, ports, health checks, and metrics that really exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.metrics import MetricWrapperBase

from raymall import metrics
from raymall.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_full_stack_with_health_checks() -> None:
    services = compose()["services"]
    expected = {
        "mysql",
        "redis",
        "etcd",
        "minio",
        "milvus",
        "prometheus",
        "grafana",
        "raymall-head",
        "ray-worker",
    }
    assert expected <= set(services)
    for name in expected:
        assert "healthcheck" in services[name], f"{name} has no health check"
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["redis"]["image"].startswith("redis:7")


def test_compose_raymall_variables_are_real_settings_and_point_at_services() -> None:
    services = compose()["services"]
    env = services["raymall-head"]["environment"]
    fields = set(Settings.model_fields)
    for key in env:
        assert key.startswith("RAYMALL_")
        assert key.removeprefix("RAYMALL_").lower() in fields, f"{key} is not a setting"
    assert "@mysql:3306/" in env["RAYMALL_DATABASE_URL"]
    assert env["RAYMALL_DATABASE_URL"].startswith("mysql+pymysql://")
    assert env["RAYMALL_REDIS_URL"].startswith("redis://redis:6379")
    assert env["RAYMALL_MILVUS_URI"] == "http://milvus:19530"
    assert env["RAYMALL_ENV"] == "prod"
    port = int(env["RAYMALL_HTTP_PORT"])
    assert f"{port}:{port}" in services["raymall-head"]["ports"]
    # prod refuses to start without strong secrets; compose must require them, not embed them
    for secret in ("RAYMALL_JWT_SECRET", "RAYMALL_PAYMENT_SECRET", "RAYMALL_FLASH_TOKEN_SECRET"):
        assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", env[secret])
    # in prod /metrics needs the ops token: compose requires it and Prometheus scrapes with it
    assert re.fullmatch(r"\$\{RAYMALL_OPS_TOKEN:\?[^}]+\}", env["RAYMALL_OPS_TOKEN"])
    assert compose()["configs"]["ops_token"]["content"] == env["RAYMALL_OPS_TOKEN"]
    mounted = {c["target"] for c in services["prometheus"]["configs"]}
    scrape = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())["scrape_configs"]
    raymall = next(job for job in scrape if job["job_name"] == "raymall")
    assert raymall["authorization"]["credentials_file"] in mounted


def test_compose_head_uses_port_6380_and_worker_joins_it() -> None:
    services = compose()["services"]
    assert "--port=6380" in services["raymall-head"]["command"]
    assert "raymall serve --address auto" in services["raymall-head"]["command"]
    assert "raymall-head:6380" in services["ray-worker"]["command"]


def test_compose_mounts_the_deploy_files_that_exist() -> None:
    services = compose()["services"]
    for svc in ("prometheus", "grafana"):
        for volume in services[svc]["volumes"]:
            host = volume.split(":", 1)[0]
            assert (ROOT / host).exists(), f"{svc} mounts missing {host}"


def test_dockerfile_is_multi_stage_and_installs_cpu_torch_first() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert text.index("torch==2.13.0") < text.index("pip wheel --wheel-dir /wheels .")
    assert "USER raymall" in text and "HEALTHCHECK" in text and "EXPOSE 8000" in text


def test_cluster_yaml_installs_raymall_and_starts_head_on_6380() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    setup = " ".join(cfg["setup_commands"])
    assert setup.index("torch==2.13.0") < setup.index("pip install /opt/raymall")
    head = " ".join(cfg["head_start_ray_commands"])
    assert "ray start --head --port=6380" in head
    assert "raymall serve --address auto" in head
    assert ":6380" in " ".join(cfg["worker_start_ray_commands"])


def _exported_names() -> set[str]:
    """Every sample name raymall's metrics module can export."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "gauge": ("",),
        "summary": ("_sum", "_count"),
    }
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name  # noqa: SLF001
            names.update(base + suffix for suffix in suffixes[value._type])  # noqa: SLF001
    return names


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/raymall.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    queried = {m for e in exprs for m in re.findall(r"\b(raymall_[a-z_]+)", e)}
    assert queried, "the dashboard queries no raymall metric"
    missing = queried - _exported_names()
    assert not missing, f"dashboard queries metrics that raymall does not export: {missing}"
