"""Browser tests: the storefront and the admin console driven in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, installed by ``make install``) through
Selenium, against the session's one Serve app (``app`` / ``client`` of tests/conftest.py,
and the e2e fixtures ``admin``, ``shopper``, ``shop``), so they cost no server start of
their own. Screenshots go to ``var/screenshots/`` (``RAYMALL_SCREENSHOTS`` elsewhere).

Selenium is told where the driver is and to stay offline: nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import admin, shop, shopper  # noqa: F401 - the shared fixtures

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("RAYMALL_SCREENSHOTS", ROOT / "var" / "screenshots"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (make install)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--lang=en-US",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshot() -> Any:
    SHOTS.mkdir(parents=True, exist_ok=True)

    def take(driver: Any, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        driver.save_screenshot(str(path))
        return path

    return take
