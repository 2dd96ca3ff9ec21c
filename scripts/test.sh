#!/usr/bin/env bash
# Set everything up and run every check: lint, types, the JupyterLab extension's lint and
# jest tests, its UI tests in Debian Chromium, then the Python unit and integration tests
# (which start the embedded data lake themselves and stop it after).
#
#   bash scripts/test.sh [PYTEST ARGS]    ESCAPE_PORTAL_SKIP_UI=1 skips the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy

echo "== JupyterLab extension: build, lint, types, jest" >&2
bash scripts/build-extension.sh --test

if [ "${ESCAPE_PORTAL_SKIP_UI:-0}" != 1 ]; then
  echo "== JupyterLab extension: UI tests (Galata, Debian Chromium)" >&2
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
  # The UI tests run against the same embedded lake as the Python tests; whatever this
  # script starts, it stops (by process id) when the UI tests end.
  export ESCAPE_PORTAL_LAKE_DIR="${ESCAPE_PORTAL_TEST_LAKE_DIR:-$PWD/.cache/test-lake}"
  started_lake=0
  if ! .venv/bin/escape-portal lake status --json 2>/dev/null \
    | .venv/bin/python -c 'import json, sys; sys.exit(not json.load(sys.stdin)["running"])'; then
    .venv/bin/escape-portal lake up >&2
    started_lake=1
  fi
  stop_lake() { if [ "$started_lake" = 1 ]; then .venv/bin/escape-portal lake down >&2 || true; fi; }
  trap stop_lake EXIT
  bash scripts/build-extension.sh --ui
  stop_lake
  started_lake=0
  unset ESCAPE_PORTAL_LAKE_DIR
fi

echo "== pytest" >&2
.venv/bin/pytest "$@"
