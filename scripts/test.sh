#!/usr/bin/env bash
# Set everything up and run every check: lint, types, unit and integration tests
# (the integration tests start the embedded data lake themselves and stop it after).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
.venv/bin/pytest "$@"
