"""Growing with the load: the ingress has a fixed replica count unless
``RAYMALL_INGRESS_AUTOSCALING`` hands it to Serve's autoscaler (min, max, target requests in
flight), cluster.yaml lets the Ray autoscaler add and remove machines, and the application
builder Serve's tooling calls refuses the embedded stores a cluster cannot share."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ray.serve.config import AutoscalingConfig

from raymall.launcher.app import ingress_options
from raymall.settings import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_ingress_has_a_fixed_count_unless_autoscaling_is_on() -> None:
    options = ingress_options(load_settings(ingress_replicas=3))
    assert options["num_replicas"] == 3 and "autoscaling_config" not in options
    assert options["graceful_shutdown_timeout_s"] > 0  # a removed replica drains first


def test_autoscaling_hands_the_count_to_serve_within_min_and_max() -> None:
    settings = load_settings(
        ingress_autoscaling=True,
        ingress_replicas=9,
        ingress_min_replicas=2,
        ingress_max_replicas=6,
        ingress_target_ongoing_requests=8,
        ingress_upscale_delay_s=3,
        ingress_downscale_delay_s=20,
        ingress_autoscaling_look_back_s=12,
    )
    options = ingress_options(settings)
    assert "num_replicas" not in options
    config = AutoscalingConfig(**options["autoscaling_config"])
    assert (config.min_replicas, config.max_replicas, config.initial_replicas) == (2, 6, 6)
    assert config.target_ongoing_requests == 8
    assert (config.upscale_delay_s, config.downscale_delay_s) == (3, 20)
    assert config.look_back_period_s == 12


def test_a_maximum_below_the_minimum_is_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match="RAYMALL_INGRESS_MAX_REPLICAS.*MIN_REPLICAS"):
        load_settings(ingress_autoscaling=True, ingress_min_replicas=4, ingress_max_replicas=2)
    load_settings(ingress_min_replicas=4, ingress_max_replicas=2)  # unused while off


def test_cluster_yaml_lets_the_ray_autoscaler_grow_and_shrink_the_cluster() -> None:
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert 0 < cfg["min_workers"] < cfg["max_workers"] <= len(cfg["provider"]["worker_ips"])
    assert cfg["idle_timeout_minutes"] > 0 and cfg["upscaling_speed"] > 0
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--autoscaling-config=" in head


def test_the_application_builder_refuses_embedded_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    from raymall.launcher import serve_app

    for name in ("RAYMALL_DATABASE_URL", "RAYMALL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(ROOT / "deploy")  # no .env here
    with pytest.raises(ConfigError, match="RAYMALL_DATABASE_URL and RAYMALL_REDIS_URL"):
        serve_app.app({})
