#!/usr/bin/env bash
# Set up everything ESCAPE Portal needs on a fresh Debian machine, idempotently:
#   - system packages: memcached (the Rucio server caches through it); ActiveMQ (the
#     broker of Rucio's notifications); the XRootD server with its HTTP and SciTokens
#     plugins and client, acl, and gfal2 with its http/xrootd/file plugins (the embedded
#     lake's grid storage and copies, see escape_portal/embedded/xrootd.py); PostgreSQL
#     (the lake's catalogue with --database postgresql); STILTS, the
#     reference VO tool the tests check the lake's TAP service with (optional)
#   - .venv: a virtual environment with the package and pinned dependencies
#   - tests/hub/node_modules: configurable-http-proxy for the JupyterHub test (npm, from
#     tests/hub/package-lock.json)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v memcached >/dev/null 2>&1 || [ -x /usr/bin/memcached ] || need_apt+=(memcached)
# ActiveMQ, the embedded lake's message broker (Java comes as its dependency; Debian's
# own "main" instance stays disabled: the lake runs its own in its data directory).
[ -f /usr/share/activemq/bin/activemq.jar ] || need_apt+=(activemq)
# PostgreSQL, the embedded lake's catalogue (its server binaries only are used: the lake
# runs a cluster of its own in its data directory; SQLite is the fallback without it).
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# ss, with which the tests check what the lake's processes listen on.
command -v ss >/dev/null 2>&1 || need_apt+=(iproute2)
[ -x /usr/bin/xrootd ] || need_apt+=(xrootd-server xrootd-server-plugins xrootd-plugins)
ls /usr/lib/*/libXrdAccSciTokens-5.so >/dev/null 2>&1 || need_apt+=(xrootd-scitokens-plugins)
command -v xrdcp >/dev/null 2>&1 || need_apt+=(xrootd-client)
command -v setfacl >/dev/null 2>&1 || need_apt+=(acl)
# gfal2, the copy engine inside FTS, with which the lake's conveyor copies over davs://.
command -v gfal-copy >/dev/null 2>&1 || need_apt+=(gfal2-util-scripts)
for plugin in http xrootd file; do
  ls /usr/lib/*/gfal2-plugins/libgfal_plugin_$plugin.so >/dev/null 2>&1 || need_apt+=(gfal2-plugin-$plugin)
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: please install: ${need_apt[*]} (Debian: apt-get install ${need_apt[*]})" >&2; exit 1
  fi
  echo "Installing system packages: ${need_apt[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if ! command -v stilts >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing STILTS (optional: the VO conformance test uses it)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends stilts >/dev/null; } \
    || echo "warning: STILTS could not be installed; its test will be skipped" >&2
fi

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python >= 3.11 is needed ($PYTHON is $("$PYTHON" --version 2>&1))" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv" >&2
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.escape-portal-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements/constraints.txt -nt "$stamp" ]; then
  echo "Installing Python packages into .venv (pinned by requirements/constraints.txt)" >&2
  # The editable install leaves the JupyterLab extension to scripts/build-extension.sh
  # (a wheel built with 'pip wheel .' builds and ships it; see pyproject.toml).
  SKIP_JUPYTER_BUILDER=1 .venv/bin/python -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e '.[dev]'
  touch "$stamp"
fi

# configurable-http-proxy for tests/integration/test_jupyterhub.py, pinned by its lockfile.
# Reinstalled when missing or when the lockfile is newer than the install; npm's cache is
# kept in .cache/npm so nothing outside the repository is relied on.
hub=tests/hub
if [ ! -x "$hub/node_modules/.bin/configurable-http-proxy" ] \
  || [ "$hub/package-lock.json" -nt "$hub/node_modules/.package-lock.json" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is needed to install configurable-http-proxy for the JupyterHub test;" \
      "install Node.js >= 20 (with npm) and run this again" >&2
    exit 1
  fi
  echo "Installing configurable-http-proxy into $hub/node_modules (npm ci, from its lockfile)" >&2
  (cd "$hub" && npm_config_cache="$PWD/../../.cache/npm" npm ci --ignore-scripts --no-audit \
    --no-fund --loglevel=error)
fi
