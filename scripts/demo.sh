#!/usr/bin/env bash
# The main job: set everything up, start the embedded data lake and take the tour.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/escape-portal lake up
.venv/bin/escape-portal tour
echo
echo "The embedded lake keeps running. Try: .venv/bin/escape-portal ls cta"
echo "Stop it with: .venv/bin/escape-portal lake down"
