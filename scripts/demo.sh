#!/usr/bin/env bash
# The main job: set everything up, start the embedded data lake, and open JupyterLab with
# the ESCAPE Portal extension (Data Lake and VO Search panels) on the guided tour.
#
#   bash scripts/demo.sh          # JupyterLab on http://127.0.0.1:8888 (Ctrl-C stops it)
#   bash scripts/demo.sh --cli    # the guided tour in the terminal instead
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build-extension.sh >&2
.venv/bin/escape-portal lake up
if [ "${1:-}" = "--cli" ]; then
  .venv/bin/escape-portal tour
  echo
  echo "The embedded lake keeps running. Try: .venv/bin/escape-portal ls cta"
  echo "Stop it with: .venv/bin/escape-portal lake down"
  exit 0
fi
echo "The embedded lake keeps running after JupyterLab stops: .venv/bin/escape-portal lake down" >&2
root=()
if [ "$(id -u)" = 0 ]; then root=(--allow-root); fi
exec .venv/bin/jupyter lab notebooks/00-tour.ipynb --ip 127.0.0.1 --port "${PORT:-8888}" "${root[@]}"
