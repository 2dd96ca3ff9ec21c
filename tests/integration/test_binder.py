"""The Binder configuration (binder/), run from a clean checkout as repo2docker runs it.

A Binder image is built from the repository's committed files only: nothing untracked
(.venv, .cache, node_modules, a built extension) is there. So the tests clone the
committed HEAD into a temporary folder and, with a fresh ``$HOME`` and this virtual
environment's ``bin`` first on ``PATH`` (standing in for the image's environment that
postBuild installs), run

1. the lines of ``binder/postBuild`` that build and seed the embedded lake in the image
   (``escape-portal lake up && escape-portal lake down``, in ``$HOME/.escape-portal/lake``,
   the default: ``ESCAPE_PORTAL_LAKE_DIR`` is not set), then
2. ``binder/start`` with a small command as ``"$@"``: the script starts the seeded lake
   and execs the command, which runs the tour notebook's first cell against that lake.

The new lake runs beside the shared test lake (every part of it listens on a port picked
free on 127.0.0.1 when it is first started) and is stopped by process id at the end. The
shared test lake is never started, stopped or written to here.

Seeding a fresh lake takes 1-3 minutes (110,000 files written and registered).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from escape_portal.embedded.supervisor import COMPONENTS

ROOT = Path(__file__).resolve().parents[2]
#: The virtual environment's scripts (python, escape-portal, jupyter, ...).
VENV_BIN = Path(sys.prefix) / "bin"
#: The system part of PATH in the sessions run here; escape-portal must not be on it.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"

#: What a session runs as "$@": the tour's first code cell (Lake.from_instance() and the
#: identity it prints), then a DID of the seeded data; the last line is JSON for the test.
#: ``-P``: the package is imported from the environment, as in the image, not from the
#: checkout that is the working directory.
PROBE = """
import json, os, sys
from pathlib import Path

tour = json.loads(Path("notebooks/00-tour.ipynb").read_text())
first = next("".join(c["source"]) for c in tour["cells"] if c["cell_type"] == "code")
namespace = {}
exec(first, namespace)
lake = namespace["lake"]
print(json.dumps({
    "pid": os.getpid(),
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "lake_dir": os.environ.get("ESCAPE_PORTAL_LAKE_DIR"),
    "account": namespace["who"].account,
    "rucio_host": lake.config.rucio_host,
    "scopes": lake.scopes(),
    "crab_target": lake.metadata("cta:crab-2024.dl3")["target"],
}))
"""


@dataclass
class Checkout:
    root: Path
    home: Path

    @property
    def lake_dir(self) -> Path:
        """Where binder/postBuild and binder/start put the lake by default."""
        return self.home / ".escape-portal" / "lake"


def session_env(home: Path, path: str) -> dict[str, str]:
    """A Binder session's environment: nothing of this machine's lake or Rucio setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUCIO_", "ESCAPE_PORTAL_", "XDG_", "JUPYTER_", "BEARER_TOKEN"))
        and k not in {"VIRTUAL_ENV", "PYTHONPATH", "MPLCONFIGDIR"}
    }
    env.update(HOME=str(home), PATH=path, PYTHONUNBUFFERED="1")
    return env


def image_env(checkout: Checkout) -> dict[str, str]:
    return session_env(checkout.home, f"{VENV_BIN}{os.pathsep}{SYSTEM_PATH}")


def postbuild_lake_lines() -> str:
    """The lines of binder/postBuild that build and seed the lake (its lake section)."""
    text = (ROOT / "binder" / "postBuild").read_text()
    match = re.search(r'^echo "== embedded lake.*?(?=^echo "== )', text, re.S | re.M)
    assert match, 'binder/postBuild has no section starting with echo "== embedded lake'
    lines = match.group(0)
    assert "escape-portal lake up" in lines and "escape-portal lake down" in lines, lines
    return lines


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def lake_pids(lake_dir: Path) -> dict[str, int]:
    pids = {}
    for component in COMPONENTS:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pids[component] = int((lake_dir / "run" / f"{component}.pid").read_text())
    return pids


def shared_lake_state() -> dict[str, Any] | None:
    shared = Path(os.environ.get("ESCAPE_PORTAL_TEST_LAKE_DIR", ROOT / ".cache" / "test-lake"))
    with contextlib.suppress(FileNotFoundError, ValueError):
        state: dict[str, Any] = json.loads((shared / "run" / "state.json").read_text())
        return state
    return None


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Checkout:
    """A clone of the committed HEAD, and a fresh home for its sessions."""
    git = shutil.which("git")
    if git is None:
        pytest.fail("git is needed to make a clean checkout of the repository; install git")
    head = subprocess.run(
        [git, "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        pytest.fail(f"{ROOT} is not a git checkout with a commit: {head.stderr.strip()}")
    base = tmp_path_factory.mktemp("binder")
    dest = base / "checkout"
    clone = subprocess.run(
        [git, "clone", "--quiet", str(ROOT), str(dest)], capture_output=True, text=True
    )
    assert clone.returncode == 0, clone.stderr
    subprocess.run(
        [git, "-C", str(dest), "checkout", "--quiet", "--detach", head.stdout.strip()], check=True
    )
    for untracked in (".venv", ".cache", "extensions/jupyterlab/node_modules"):
        assert not (dest / untracked).exists(), untracked
    home = base / "home"
    home.mkdir()
    return Checkout(dest, home)


@pytest.fixture(scope="module")
def seeded(checkout: Checkout) -> Iterator[Checkout]:
    """The lake built and seeded by postBuild's lines; stopped by process id at the end."""
    assert not checkout.lake_dir.exists()
    script = "set -euo pipefail\n" + postbuild_lake_lines()
    started = time.monotonic()
    try:
        build = subprocess.run(
            ["bash", "-c", script],
            cwd=checkout.root,
            env=image_env(checkout),
            capture_output=True,
            text=True,
            timeout=540,
            check=False,
        )
        print(f"[binder] postBuild's lake lines: {time.monotonic() - started:.1f} s")
        assert build.returncode == 0, build.stdout + build.stderr
        assert "Embedded lake up in" in build.stderr and "Stopped:" in build.stdout
        assert json.loads((checkout.lake_dir / "db" / "seeded.json").read_text())["total_s"] > 0
        assert not list((checkout.lake_dir / "logs").glob("*.log"))  # removed for the image
        assert lake_pids(checkout.lake_dir) == {}  # lake down: nothing left running
        yield checkout
    finally:
        stop_lake(checkout)


def stop_lake(checkout: Checkout) -> None:
    """``escape-portal lake down`` of the Binder lake, and its processes checked gone."""
    lake_dir = checkout.lake_dir
    assert lake_dir.is_relative_to(checkout.home)  # never the shared test lake
    pids = lake_pids(lake_dir)
    env = dict(image_env(checkout), ESCAPE_PORTAL_LAKE_DIR=str(lake_dir))
    down = subprocess.run(
        [str(VENV_BIN / "escape-portal"), "lake", "down"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {name: pid for name, pid in pids.items() if alive(pid)}
    # 110,000 files of sample data: not kept among pytest's last three temporary folders.
    shutil.rmtree(lake_dir, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert not left, f"still running after lake down: {left}"


def run_start(
    checkout: Checkout, env: dict[str, str], *command: str
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run binder/start "$@" as repo2docker does; return its process id and the result."""
    with subprocess.Popen(
        [str(checkout.root / "binder" / "start"), *command],
        cwd=checkout.root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        return process.pid, result


def probe(stdout: str) -> dict[str, Any]:
    lines = stdout.strip().splitlines()
    assert lines, "the command of the session printed nothing"
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def test_start_runs_the_session_against_the_seeded_lake(seeded: Checkout) -> None:
    shared_before = shared_lake_state()
    seeded_marker = (seeded.lake_dir / "db" / "seeded.json").read_text()
    started = time.monotonic()
    pid, result = run_start(
        seeded, image_env(seeded), "python", "-P", "-c", PROBE, "--ServerApp.port=0"
    )
    elapsed = time.monotonic() - started
    print(f"[binder] binder/start on the seeded lake, with the session's command: {elapsed:.1f} s")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert "Embedded lake up in" in result.stderr
    # Seeded by postBuild's lines: only started here.
    assert "seeded in" not in result.stderr, result.stderr
    assert (seeded.lake_dir / "db" / "seeded.json").read_text() == seeded_marker
    seen = probe(result.stdout)
    assert seen["pid"] == pid  # exec "$@": the command replaced the script's shell
    assert seen["argv"] == ["--ServerApp.port=0"]
    assert seen["cwd"] == str(seeded.root)
    assert seen["lake_dir"] == str(seeded.lake_dir)  # binder/start's default, exported
    state = json.loads((seeded.lake_dir / "run" / "state.json").read_text())
    assert seen["rucio_host"] == state["rucio_host"]
    # The tour cell: the default instance, researcher alice over OIDC.
    assert "on embedded-alice (" + str(state["rucio_host"]) + ")" in result.stdout
    assert {"cta", "lofar", "km3net", "ska"} <= set(seen["scopes"])
    assert seen["crab_target"] == "Crab"
    pids = lake_pids(seeded.lake_dir)
    assert set(pids) == set(COMPONENTS) and all(alive(p) for p in pids.values())
    # Side by side with the shared test lake: other ports and processes, which still run.
    if shared_before is not None:
        ports = ("server_port", "memcached_port", "idp_port", "broker_port", "vo_port")
        assert not {state[p] for p in ports} & {shared_before[p] for p in ports}
        assert not set(pids.values()) & set(shared_before["pids"].values())
        shared_after = shared_lake_state() or {}
        # The shared lake's processes and ports are untouched (its fixture may rewrite the
        # rest of state.json when another test session calls up() on it).
        assert {k: shared_after.get(k) for k in ("pids", *ports)} == {
            k: shared_before[k] for k in ("pids", *ports)
        }

    # A second session of the same image (a restart): the running lake is reused.
    _, again = run_start(seeded, image_env(seeded), "escape-portal", "whoami")
    assert again.returncode == 0, again.stderr
    assert str(state["rucio_host"]) in again.stdout and "on embedded" in again.stdout
    assert lake_pids(seeded.lake_dir) == pids  # nothing restarted


def test_start_without_escape_portal_still_starts_the_session(
    checkout: Checkout, tmp_path: Path
) -> None:
    env = session_env(tmp_path, SYSTEM_PATH)
    assert shutil.which("escape-portal", path=SYSTEM_PATH) is None
    script = "import os, sys; print(os.getpid(), os.environ['ESCAPE_PORTAL_LAKE_DIR'])"
    pid, result = run_start(checkout, env, sys.executable, "-c", script)
    assert result.returncode == 0, result.stderr
    assert "warning: escape-portal is not installed" in result.stderr
    lake_dir = tmp_path / ".escape-portal" / "lake"
    assert result.stdout.split() == [str(pid), str(lake_dir)]  # binder/start's default
    assert not lake_dir.exists()


def test_start_with_a_broken_lake_still_starts_the_session(
    checkout: Checkout, tmp_path: Path
) -> None:
    broken = tmp_path / "not-a-folder"
    broken.write_text("a file where the lake's folder should be\n")
    env = session_env(tmp_path, f"{VENV_BIN}{os.pathsep}{SYSTEM_PATH}")
    env["ESCAPE_PORTAL_LAKE_DIR"] = str(broken)
    pid, result = run_start(checkout, env, "python", "-c", "import os; print(os.getpid())")
    assert result.returncode == 0, result.stderr
    assert f"warning: the embedded lake did not start; see {broken}/logs/" in result.stderr
    assert result.stdout.split() == [str(pid)]
    assert broken.read_text().startswith("a file")  # nothing was started or written


def test_scripts_parse_and_are_executable(checkout: Checkout) -> None:
    for name in ("postBuild", "start"):
        script = checkout.root / "binder" / name
        assert os.access(script, os.X_OK), f"binder/{name} is not executable in git"
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, parsed.stderr


def test_binder_pins_agree_with_the_project() -> None:
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    constraints = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    environment = (ROOT / "binder" / "environment.yml").read_text()
    python = re.search(r"^\s*-\s*python=(\d+\.\d+)\s*$", environment, re.M)
    assert python, "binder/environment.yml pins no Python version"
    assert python.group(1) + ".0" in SpecifierSet(pyproject["project"]["requires-python"])
    # The constraints are checked on the Python of the development environment.
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python.group(1)
    # postBuild installs JupyterLab through the constraints: the version the extension is
    # built with (build-system) and developed against (the dev extra).
    lab = constraints["jupyterlab"]
    assert f"jupyterlab=={lab}" in pyproject["build-system"]["requires"]
    assert f"jupyterlab=={lab}" in pyproject["project"]["optional-dependencies"]["dev"]
    postbuild = (ROOT / "binder" / "postBuild").read_text()
    notebook = re.search(r'"notebook([<>=!,.\d]+)"', postbuild)
    assert notebook, "binder/postBuild does not pin notebook"
    assert constraints["notebook"] in SpecifierSet(notebook.group(1))
    assert "-c requirements/constraints.txt" in postbuild
