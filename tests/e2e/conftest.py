"""Fixtures every end-to-end area uses, one definition each (module scope: one admin, one
signed-in shopper and one database helper per test module):

- ``admin``: an admin made with ``raymall.bootstrap.create_admin`` and signed in;
- ``shopper``: a user registered and signed in over HTTP (``tests.auth_helpers.new_user``);
- ``shop``: direct database access for setup and checks (``tests.order_helpers.Shop``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth_helpers import TestUser, new_admin, new_user
from tests.order_helpers import Shop


@pytest.fixture(scope="module")
def admin(app: Any, client: httpx.Client) -> TestUser:
    return new_admin(app, client)


@pytest.fixture(scope="module")
def shopper(client: httpx.Client) -> TestUser:
    return new_user(client)


@pytest.fixture(scope="module")
def shop(app: Any) -> Iterator[Shop]:
    s = Shop(app.settings)
    yield s
    s.dispose()


LAST = "test_fuzz_api.py"  # its admin may block users, delete products and end sales


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The API fuzz stage runs after every other end-to-end test of the session (however
    the session is started: `make test`, `make e2e` or pytest on the folder), so nothing it
    changes on the shared server can disturb another test."""
    items.sort(key=lambda item: item.path.name == LAST)
