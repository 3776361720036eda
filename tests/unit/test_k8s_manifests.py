"""deploy/k8s/ (KubeRay RayService, ConfigMaps, Secret, store names) stays deployable: every
file parses and is listed by the kustomization, the objects carry their required fields,
every setting named is a real one with a valid value, no secret is committed, the Ray
environment matches what ``raymall serve`` sets, the Serve config's application builder
exists, and the settings turn on an autoscaling config Serve accepts."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest
import ray
import yaml

from raymall.launcher.app import ingress_options, ray_env
from raymall.settings import ConfigError, Settings, load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
STRONG = "k8s-test-" + "x1y2z3w4" * 5  # stands in for a filled-in secret


def documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def env_from_manifests() -> dict[str, str]:
    """The environment a pod gets: both ConfigMaps and the Secret (placeholders replaced)."""
    env = dict(one("ConfigMap", "raymall-settings")["data"])
    for key, value in one("Secret", "raymall-secrets")["stringData"].items():
        env[key] = str(value).replace("REPLACE-ME", STRONG)
    return env


def settings_from(env: dict[str, str]) -> Settings:
    fields = {k.removeprefix("RAYMALL_").lower(): v for k, v in env.items()}
    return load_settings(**fields)


def test_every_file_parses_and_the_kustomization_lists_them_all() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for doc in documents():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
        assert doc["metadata"]["name"]


def test_every_setting_named_anywhere_exists() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    named = set()
    for path in K8S.glob("*.yaml"):
        named |= set(re.findall(r"\bRAYMALL_([A-Z0-9_]+)", path.read_text()))
    assert named, "the manifests name no settings"
    assert named - fields == set(), "deploy/k8s names settings raymall does not have"


def test_the_settings_are_valid_for_production_once_the_secrets_are_filled_in() -> None:
    settings = settings_from(env_from_manifests())
    assert settings.env == "prod"
    assert settings.database_url and settings.database_url.startswith("mysql+pymysql://")
    for url in (settings.database_url, settings.redis_url, settings.milvus_uri):
        host = re.split(r"[@/:]", str(url).split("://", 1)[1].rsplit("@", 1)[-1])[0]
        assert host in {"raymall-mysql", "raymall-redis", "raymall-milvus"}, url
    stores = {d["metadata"]["name"] for d in documents() if d["kind"] == "Service"}
    assert {"raymall-mysql", "raymall-redis", "raymall-milvus", "raymall-media"} <= stores


def test_no_secret_is_committed_and_none_sits_in_a_config_map() -> None:
    secret = one("Secret", "raymall-secrets")["stringData"]
    for key, value in secret.items():
        assert "REPLACE-ME" in str(value), f"{key} holds a value: secrets stay out of the repo"
    as_given = {k.removeprefix("RAYMALL_").lower(): v for k, v in secret.items()}
    with pytest.raises(ConfigError, match="too weak"):  # deployed unfilled, it refuses to start
        load_settings(**as_given, env="prod")
    secret_fields = {
        f"RAYMALL_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation)
    }
    config = set(one("ConfigMap", "raymall-settings")["data"])
    assert config & secret_fields == set()
    assert "RAYMALL_DATABASE_URL" not in config  # it carries the database password


def test_the_ray_environment_is_what_raymall_serve_sets() -> None:
    pod_env = one("ConfigMap", "raymall-ray-env")["data"]
    local = ray_env(Settings(http_port=8000, var_dir=Path("/var/lib/raymall")))
    assert set(pod_env) <= set(local), set(pod_env) - set(local)
    for key, value in pod_env.items():
        if key != "PROMETHEUS_MULTIPROC_DIR":  # a path of the pod's own
            assert str(value) == local[key], key
    for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"):
        assert key in pod_env


def test_the_rayservice_runs_the_app_with_both_autoscalers() -> None:
    service = one("RayService", "raymall")
    assert service["apiVersion"] == "ray.io/v1"
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    (application,) = serve_config["applications"]
    module, _, attr = application["import_path"].partition(":")
    builder = getattr(importlib.import_module(module), attr)
    # what Serve requires of an application builder before it calls one
    assert isinstance(builder, FunctionType) and len(inspect.signature(builder).parameters) == 1
    assert application["route_prefix"] == "/"
    assert serve_config["http_options"]["port"] == 8000
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == ray.__version__
    assert cluster["enableInTreeAutoscaling"] is True
    for group in cluster["workerGroupSpecs"]:
        assert 1 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    defined = {(d["kind"], d["metadata"]["name"]) for d in documents()}
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        assert container["image"]
        refs = {
            ("ConfigMap", r["configMapRef"]["name"])
            if "configMapRef" in r
            else ("Secret", r["secretRef"]["name"])
            for r in container["envFrom"]
        }
        assert refs == {
            ("ConfigMap", "raymall-settings"),
            ("ConfigMap", "raymall-ray-env"),
            ("Secret", "raymall-secrets"),
        }
        assert refs <= defined
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert one("ConfigMap", "raymall-ray-env")["data"]["PROMETHEUS_MULTIPROC_DIR"] in mounts


def test_the_settings_give_an_ingress_autoscaling_config_serve_accepts() -> None:
    from ray.serve.config import AutoscalingConfig

    options = ingress_options(settings_from(env_from_manifests()))
    assert "num_replicas" not in options
    config = AutoscalingConfig(**options["autoscaling_config"])
    assert 1 <= config.min_replicas < config.max_replicas
    assert config.target_ongoing_requests == 32
    assert config.min_replicas <= (config.initial_replicas or 0) <= config.max_replicas
