"""The supervisor: a part that dies comes back on the same port, and clients carry on.

These tests kill parts of a lake of their own (a data directory under pytest's tmp,
catalogue built, not seeded: fresh datasets are all they move), so the shared test lake
is not disturbed. The lake is stopped at the end, by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from escape_portal.config import LakeConfig, embedded_instance
from escape_portal.embedded.fresh import fresh_dataset
from escape_portal.embedded.supervisor import COMPONENTS, PARTS, SUPERVISOR, EmbeddedLake, Run
from escape_portal.events import wait_for
from escape_portal.lake import DID, Lake, RuleProgress

pytestmark = pytest.mark.lake
DESTINATION = "CERN-DISK"
#: A part killed must answer again within this many seconds (on 2 busy cores; the
#: server's restart is mostly importing Rucio's application, ~4 s of CPU).
RESTART_WITHIN = 45.0


@pytest.fixture(scope="module")
def own_lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLake]:
    lake = EmbeddedLake(tmp_path_factory.mktemp("supervised-lake"))
    try:
        lake.up(seed=False)
        yield lake
    finally:
        lake.down()


@pytest.fixture(scope="module")
def own_config(own_lake: EmbeddedLake) -> LakeConfig:
    config = embedded_instance({"ESCAPE_PORTAL_LAKE_DIR": str(own_lake.paths.root)})
    assert config is not None
    return config


def _pid(lake: EmbeddedLake, part: str) -> int:
    pid = lake.status().components[[*COMPONENTS, SUPERVISOR].index(part)].pid
    assert pid is not None
    return pid


def _serves(lake: EmbeddedLake, part: str) -> bool:
    """Whether ``part`` passes its own ready check on the saved ports."""
    (component,) = [p for p in PARTS if p.name == part]
    return component.ready(Run(lake.paths, lake.saved_ports()))


def _wait_restarted(lake: EmbeddedLake, part: str, old_pid: int) -> float:
    """Seconds until ``part`` runs under a new pid, serves, and the whole lake answers."""
    started = time.monotonic()
    while time.monotonic() - started < RESTART_WITHIN:
        status = lake.status()
        pid = _pid(lake, part)
        # _serves on the saved ports: restarted on the same port (STOMP, TLS or HTTP).
        if pid != old_pid and status.running and _serves(lake, part):
            return time.monotonic() - started
        time.sleep(0.2)
    raise AssertionError(f"{part} was not back within {RESTART_WITHIN} s")


def _follow(config: LakeConfig, rule_id: str) -> tuple[threading.Thread, list[RuleProgress]]:
    """A client waiting for the rule in a thread (its own Lake, as a kernel would)."""
    result: list[RuleProgress] = []
    waiter = Lake(config)
    waiter.ping()  # this client has met the lake alive

    def run() -> None:
        result.append(wait_for(waiter, rule_id, timeout=120, first_interval=0.5, max_interval=2))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _one_rule_one_replica_each(lake: Lake, own_lake: EmbeddedLake, did: DID) -> None:
    rules = [r for r in lake.rules(did) if r.rse_expression == DESTINATION]
    assert len(rules) == 1, rules
    files = list(lake.files(did))
    for rep in lake.file_replicas(f.did for f in files):
        assert rep.states.get(DESTINATION) == "AVAILABLE", rep
    on_disk = [p for p in own_lake.paths.rse_dir(DESTINATION).rglob(f"{did.name}.*") if p.is_file()]
    assert len(on_disk) == len(files), on_disk


@pytest.mark.parametrize(
    "part", ["server", "daemons", "conveyor", "memcached", "xrootd-CERN-DISK", "broker", "idp"]
)
def test_killed_part_restarts_on_its_port_and_the_rule_completes(
    part: str, own_lake: EmbeddedLake, own_config: LakeConfig
) -> None:
    lake = Lake(own_config)
    ports = own_lake.saved_ports()
    did = fresh_dataset(lake, prefix=f"killed-{part}")
    rule, created = lake.add_rule(did, DESTINATION, lifetime=3600, comment="supervision test")
    assert created
    thread, result = _follow(own_config, rule.id)
    old_pid = _pid(own_lake, part)
    os.kill(old_pid, signal.SIGKILL)
    took = _wait_restarted(own_lake, part, old_pid)
    print(f"{part} back in {took:.1f} s")
    assert own_lake.saved_ports() == ports
    assert own_lake.status().rucio_host == f"http://127.0.0.1:{ports['server_port']}"
    thread.join(timeout=120)
    assert result and result[0].state == "available", result
    _one_rule_one_replica_each(lake, own_lake, did)
    log = (own_lake.paths.logs / "supervisor.log").read_text()
    assert f"{part} (pid {old_pid}) died" in log and f"{part} restarted as pid" in log


def test_down_and_up_keep_every_port(own_lake: EmbeddedLake) -> None:
    before = own_lake.saved_ports()
    assert set(before) >= {"server_port", "memcached_port", "vo_port", "xrootd_INFN-NA-DISK_https"}
    assert "storage_port" not in before  # no anonymous http storage any more
    pids = [c.pid for c in own_lake.status().components if c.pid]
    stopped = own_lake.down()
    assert set(stopped) == {*COMPONENTS, SUPERVISOR}
    assert not [p for p in pids if Path(f"/proc/{p}").exists() and _not_zombie(p)]
    status = own_lake.up(seed=False)
    assert status.running
    assert own_lake.saved_ports() == before
    assert status.rucio_host == f"http://127.0.0.1:{before['server_port']}"


def _not_zombie(pid: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return False


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def test_make_available_wait_says_one_line_while_the_server_is_down(
    own_lake: EmbeddedLake, own_config: LakeConfig, tmp_path: Path
) -> None:
    lake = Lake(own_config)
    did = fresh_dataset(lake, prefix="cli-wait", files=40)  # copies for a while (~15-30 s)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUCIO_", "ESCAPE_PORTAL_"))}
    env["ESCAPE_PORTAL_LAKE_DIR"] = str(own_lake.paths.root)
    env["ESCAPE_PORTAL_CONFIG"] = str(tmp_path / "no-instances.toml")
    cli = subprocess.Popen(
        [
            *(sys.executable, "-m", "escape_portal.cli", "make-available", str(did)),
            *("--rse", DESTINATION, "--wait", "--timeout", "150"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,  # bytes: text mode would turn the bar's \r into lines
    )
    supervisor = _pid(own_lake, SUPERVISOR)
    try:
        deadline = time.monotonic() + 60
        while len(lake.rules(did)) < 2:  # the fresh dataset's own rule, and the CLI's
            assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
            time.sleep(0.3)
        time.sleep(1.0)  # the CLI follows the rule
        # Hold the restarts while the server is away, so that the CLI meets it dead.
        _signal_group(supervisor, signal.SIGSTOP)
        _signal_group(_pid(own_lake, "server"), signal.SIGKILL)
        time.sleep(8.0)  # transfers go on; their notifications make the CLI ask
    finally:
        _signal_group(supervisor, signal.SIGCONT)
    out_bytes, err_bytes = cli.communicate(timeout=150)
    out, err = out_bytes.decode(), err_bytes.decode()
    assert cli.returncode == 0, err
    message = f"The lake at {own_config.rucio_host} does not answer; waiting for it to come back"
    assert message in err
    for raw in ("ConnectionError", "HTTPConnectionPool", "Traceback", "ERROR"):
        assert raw not in err, err
    assert "available" in out
    # One line, updated in place (carriage returns): the message never on a line of its own.
    lines = err.split("\n")
    assert not [line for line in lines if line.strip().startswith(message)], err
    assert len([line for line in lines if message in line]) == 1, err
