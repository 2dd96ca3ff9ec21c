#!/usr/bin/env bash
# Build (and optionally test) the JupyterLab extension in extensions/jupyterlab.
#
#   bash scripts/build-extension.sh            # install from the lockfile, build, link into .venv
#   bash scripts/build-extension.sh --test     # ... then prettier + eslint + tsc + jest
#   bash scripts/build-extension.sh --ui       # ... then the Galata UI tests in Debian Chromium
#                                              #     (needs the embedded lake running; screenshots
#                                              #     in extensions/jupyterlab/ui-tests/artefacts/)
#   bash scripts/build-extension.sh --prod     # production build (what the wheel ships)
#
# Needs the project venv with jupyterlab (it brings jlpm and jupyter-builder) and Node.js >= 20.
# Every yarn cache stays inside extensions/jupyterlab (see its .yarnrc.yml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXT="$ROOT/extensions/jupyterlab"
VENV="${VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export YARN_ENABLE_TELEMETRY=0

test_unit=0
test_ui=0
build_cmd=build
for arg in "$@"; do
  case "$arg" in
    --test) test_unit=1 ;;
    --ui) test_ui=1 ;;
    --prod) build_cmd=build:prod ;;
    -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

if ! command -v jlpm > /dev/null; then
  echo "jlpm not found: install JupyterLab into $VENV (pip install jupyterlab==4.6.6)." >&2
  exit 1
fi

step() { printf '\n== %s\n' "$*"; }

cd "$EXT"
step "install (from yarn.lock)"
jlpm install --immutable
step "build ($build_cmd)"
jlpm "$build_cmd"

# The wheel ships labextension/ as share/jupyter/labextensions/escape-portal; for
# development, link it there in the venv (the same place, so nothing else differs).
target="$VENV/share/jupyter/labextensions/escape-portal"
mkdir -p "$(dirname "$target")"
# An editable install of a fresh clone (no build yet) leaves only install.json there.
if [ -d "$target" ] && [ ! -L "$target" ] && [ ! -e "$target/package.json" ]; then
  rm -rf "$target"
fi
if [ -L "$target" ] || [ ! -e "$target" ]; then
  ln -sfn "$EXT/labextension" "$target"
fi
jupyter labextension list 2>&1 | grep -E "escape-portal" || true

if [ "$test_unit" = 1 ]; then
  step "lint (prettier, eslint) and types"
  jlpm lint
  jlpm typecheck
  npx --no-install tsc --noEmit -p tsconfig.test.json
  step "jest"
  jlpm test
fi

if [ "$test_ui" = 1 ]; then
  if ! command -v "${CHROMIUM_PATH:-chromium}" > /dev/null; then
    echo "Debian chromium is needed: apt-get install -y chromium" >&2
    exit 1
  fi
  if (exec 3<>/dev/tcp/127.0.0.1/8888) 2> /dev/null; then
    echo "Port 8888 is taken: Galata's test server needs it (stop what holds it)." >&2
    exit 1
  fi
  export ESCAPE_PORTAL_LAKE_DIR="${ESCAPE_PORTAL_LAKE_DIR:-$ROOT/.cache/test-lake}"
  if ! escape-portal lake status > /dev/null 2>&1; then
    echo "The embedded lake at $ESCAPE_PORTAL_LAKE_DIR is not running: escape-portal lake up" >&2
    exit 1
  fi
  step "Galata UI tests"
  cd "$EXT/ui-tests"
  jlpm install --immutable
  mkdir -p artefacts
  CI=1 jlpm playwright test
  echo "screenshots: $EXT/ui-tests/artefacts/"
fi
