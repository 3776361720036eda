from pathlib import Path

import pytest

from raymall.settings import ConfigError, load_settings


def test_defaults_are_embedded_stores_under_var(tmp_path: Path) -> None:
    s = load_settings(var_dir=tmp_path)
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'raymall.db').resolve()}"
    assert s.resolved_milvus_uri.endswith("milvus.db")
    assert s.redis_url is None


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMALL_INVENTORY_SHARDS", "zero")
    with pytest.raises(ConfigError, match="RAYMALL_INVENTORY_SHARDS"):
        load_settings()


def test_bad_database_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMALL_DATABASE_URL", "postgres://x")
    with pytest.raises(ConfigError, match="RAYMALL_DATABASE_URL"):
        load_settings()


def test_prod_refuses_missing_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMALL_ENV", "prod")
    monkeypatch.delenv("RAYMALL_JWT_SECRET", raising=False)
    with pytest.raises(ConfigError, match="RAYMALL_JWT_SECRET"):
        load_settings()


def test_prod_refuses_weak_jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMALL_ENV", "prod")
    monkeypatch.setenv("RAYMALL_JWT_SECRET", "changeme")
    monkeypatch.setenv("RAYMALL_PAYMENT_SECRET", "p" * 8 + "abcdefghijklmnopqrstuvwxyz0123456789")
    with pytest.raises(ConfigError, match="RAYMALL_JWT_SECRET is too weak"):
        load_settings()


def test_prod_accepts_strong_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMALL_ENV", "prod")
    monkeypatch.setenv("RAYMALL_JWT_SECRET", "Zq8v1N0aQmX7rT2pL5sW9yB4cD6eF3gH0jK")
    monkeypatch.setenv("RAYMALL_PAYMENT_SECRET", "Pq8v1N0aQmX7rT2pL5sW9yB4cD6eF3gH0jK")
    monkeypatch.setenv("RAYMALL_FLASH_TOKEN_SECRET", "Fq8v1N0aQmX7rT2pL5sW9yB4cD6eF3gH0jK")
    monkeypatch.setenv("RAYMALL_CARRIER_SECRET", "Cq8v1N0aQmX7rT2pL5sW9yB4cD6eF3gH0jK")
    assert load_settings().env == "prod"


def test_dev_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_settings(var_dir=tmp_path).with_secrets().secret("jwt_secret")
    second = load_settings(var_dir=tmp_path).with_secrets().secret("jwt_secret")
    assert first == second and len(first) >= 32
    assert (tmp_path / "jwt_secret.key").stat().st_mode & 0o077 == 0
