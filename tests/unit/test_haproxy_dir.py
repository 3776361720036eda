"""``remove_haproxy_dir``: Serve's HAProxy may still be writing in its directory when
``stop`` removes it, so a removal can leave the directory behind; it is retried until the
directory is gone, and gives up (with False) only after its time."""

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from raymall.launcher.app import haproxy_dir, remove_haproxy_dir
from raymall.settings import Settings

real_rmtree = shutil.rmtree


def _settings(tmp_path: Path) -> Settings:
    settings = Settings(var_dir=tmp_path / "var")
    path = haproxy_dir(settings)
    path.mkdir()
    (path / "haproxy.cfg").write_text("global\n")
    return settings


def test_a_removal_that_loses_a_race_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    path = haproxy_dir(settings)
    calls: list[Path] = []

    def racing_rmtree(target: Any, ignore_errors: bool = False) -> None:
        calls.append(Path(target))
        real_rmtree(target, ignore_errors=ignore_errors)
        if len(calls) == 1:  # HAProxy wrote a file while the directory was being removed
            path.mkdir()
            (path / "server-state").write_text("1\n")

    monkeypatch.setattr("raymall.launcher.app.shutil.rmtree", racing_rmtree)
    assert remove_haproxy_dir(settings, wait_s=5.0)
    assert not path.exists()
    assert calls == [path, path]


def test_it_gives_up_after_its_time_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    monkeypatch.setattr("raymall.launcher.app.shutil.rmtree", lambda *a, **k: None)  # never removed
    started = time.monotonic()
    assert not remove_haproxy_dir(settings, wait_s=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert haproxy_dir(settings).exists()
    monkeypatch.undo()
    assert remove_haproxy_dir(settings, wait_s=0.0) and not haproxy_dir(settings).exists()


def test_a_missing_directory_counts_as_removed(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path / "var")
    assert not haproxy_dir(settings).exists()
    assert remove_haproxy_dir(settings, wait_s=0.0)
