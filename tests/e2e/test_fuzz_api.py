"""Schemathesis over every operation of the live API's ``/openapi.json``, signed in as a
user and as an admin: any 5xx, a status the document does not list for the operation, a
body that does not match its documented schema or a wrong content type fails the test.

Budget: ``EXAMPLES`` valid and ``EXAMPLES`` invalid generated requests per operation and
role (no shrinking, a fixed seed: ``derandomize``), plus schemathesis' deterministic
coverage cases of each operation once (``cover_operation``): about 6,300 requests to
127.0.0.1 for 75 operations, about 45 s on this 2-core machine once the session's app is
up (the file alone, app start and stop included, about 2.5 minutes). Every failure is
collected, one per operation, role and kind, and reported together.

Fuzzing is destructive: the admin may block users, delete or publish catalog objects, end
sales, adjust stock. It only reaches objects that exist while it runs, so this module runs
last in ``make test`` (``scripts/test.sh``), and its own users are protected from it: a
block or unblock aimed at a user who existed before the run is redirected to a sandbox
user, and ``POST /auth/logout`` is sent with a session of its own.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import HypothesisException
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.auth_helpers import TestUser, login, new_user

pytestmark = pytest.mark.e2e

# per operation, role and generation mode; RAYMALL_TEST_FUZZ_EXAMPLES raises it for a
# longer search outside CI
EXAMPLES = int(os.environ.get("RAYMALL_TEST_FUZZ_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
USER_ADMIN_PATHS = ("/admin/users/{user_id}/block", "/admin/users/{user_id}/unblock")
LOGOUT = ("POST", "/auth/logout")


@pytest.fixture(scope="module")
def api(app: Any) -> Any:
    url = f"{app.url}/openapi.json"
    assert url.startswith("http://127.0.0.1:"), url  # traffic stays on this machine
    schema = schemathesis.openapi.from_url(url)
    # the test sends real tokens; generated Authorization headers would only hide them
    schema.config.generation.update(with_security_parameters=False, no_shrink=True)
    return schema


@pytest.fixture(scope="module")
def sandbox_user(client: httpx.Client, shopper: TestUser, admin: TestUser) -> TestUser:
    """The newest user when fuzzing starts: every block/unblock of an older id goes here."""
    return new_user(client, prefix="fz")


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def _prepare(
    case: Case, user: TestUser, sandbox: TestUser, fresh_token: Callable[[], str]
) -> dict[str, str]:
    """Aim the case away from what the run itself needs; the headers to send it with."""
    method, path = case.operation.method.upper(), case.operation.path
    if path in USER_ADMIN_PATHS:
        params = case.path_parameters or {}
        uid = params.get("user_id")
        if isinstance(uid, int) and 0 < uid <= sandbox.user_id:
            params["user_id"] = sandbox.user_id
    if (method, path) == LOGOUT:
        return {"Authorization": f"Bearer {fresh_token()}"}
    return {"Authorization": f"Bearer {user.access_token}"}


Send = Callable[[Case], "str | None"]


def sender(
    base_url: str,
    session: requests.Session,
    headers_for: Callable[[Case], dict[str, str]],
    statuses: Counter[int],
) -> Send:
    """Sends a case and runs the checks on its answer: the failure's report, or None."""

    def send(case: Case) -> str | None:
        try:
            response = case.call(base_url, session, headers_for(case), timeout=30)
            statuses[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)
        except (Exception, BaseExceptionGroup) as exc:  # a failed check (a FailureGroup)
            return f"{type(exc).__name__}: {exc}"[:3000]
        return None

    return send


def fuzz_operation(operation: Any, mode: GenerationMode, send: Send) -> str | None:
    """``EXAMPLES`` generated cases of the operation: the first failure's report, or None."""
    found: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        if not found:
            report = send(case)
            if report is not None:
                found.append(report)

    try:
        run()
    except (HypothesisException, schemathesis.errors.SchemathesisError) as exc:
        # e.g. no invalid input exists for an operation without parameters
        if mode is GenerationMode.POSITIVE:
            return f"cannot generate cases: {exc!r}"[:3000]
    return found[0] if found else None


def cover_operation(api: Any, operation: Any, send: Send) -> str | None:
    """Schemathesis' coverage cases of the operation (boundary values, each missing or
    mistyped input, valid and invalid): the first failure's report, or None."""
    config = api.config.generation_for(operation=operation)
    for case in api.iter_coverage_cases(
        operation, generation_modes=list(MODES), generation_config=config
    ):
        report = send(case)
        if report is not None:
            return report
    return None


def covered_by(role: str, path: str) -> bool:
    """Coverage cases run once per operation, as the role that reaches its handler."""
    return path.startswith("/admin/") == (role == "admin")


@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_operation_answers_as_documented(
    role: str,
    api: Any,
    app: Any,
    client: httpx.Client,
    http: requests.Session,
    shopper: TestUser,
    admin: TestUser,
    sandbox_user: TestUser,
) -> None:
    user = admin if role == "admin" else shopper
    login(client, user)  # a fresh session: an earlier role's run may have used this one

    def fresh_token() -> str:
        other = TestUser(user.user_id, user.email, user.username, user.password)
        return login(client, other).access_token

    def headers_for(case: Case) -> dict[str, str]:
        return _prepare(case, user, sandbox_user, fresh_token)

    started = time.monotonic()
    failures, operations, statuses = [], 0, Counter[int]()
    send = sender(app.url, http, headers_for, statuses)
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1
        reports = [(mode.value, fuzz_operation(operation, mode, send)) for mode in MODES]
        if covered_by(role, operation.path):
            reports.append(("coverage", cover_operation(api, operation, send)))
        failures.extend(
            f"[{role}, {kind}] {operation.label}\n{report}" for kind, report in reports if report
        )
    elapsed = time.monotonic() - started
    print(
        f"\nfuzz as {role}: {operations} operations, {statuses.total()} requests in "
        f"{elapsed:.0f} s; statuses {dict(sorted(statuses.items()))}"
    )
    assert statuses.total() >= operations * EXAMPLES, "fewer requests than the budget"
    assert operations >= 70, f"only {operations} operations in the document"
    assert not failures, f"{len(failures)} failures in {elapsed:.0f} s:\n\n" + "\n\n".join(failures)
