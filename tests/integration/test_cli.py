"""The escape-portal command against the embedded lake, as a user runs it."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lake


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "escape_portal.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_lake_status_and_idempotent_up(lake_env: dict[str, str], embedded_lake) -> None:  # type: ignore[no-untyped-def]
    pids = {c.name: c.pid for c in embedded_lake.status().components}
    up = run(lake_env, "lake", "up", "--data-dir", str(embedded_lake.paths.root), "--json")
    assert up.returncode == 0, up.stderr
    status = json.loads(up.stdout)
    assert status["running"] is True
    assert {c["name"]: c["pid"] for c in status["components"]} == pids  # nothing restarted
    text = run(lake_env, "lake", "status", "--data-dir", str(embedded_lake.paths.root))
    assert "Rucio 41.5.1" in text.stdout and "daemons" in text.stdout


def test_lake_env_lets_rucios_own_cli_in(lake_env: dict[str, str], embedded_lake, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    exports = run(lake_env, "lake", "env", "--json")
    assert exports.returncode == 0, exports.stderr
    variables = json.loads(exports.stdout)
    assert Path(variables["RUCIO_CONFIG"]).stat().st_mode & 0o077 == 0  # owner-only
    text = run(lake_env, "lake", "env").stdout
    assert f"export RUCIO_CONFIG={variables['RUCIO_CONFIG']}" in text
    # Rucio's own CLI, as a researcher runs it beside the portal (its token cache in tmp).
    env = {**lake_env, **variables, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    rucio = Path(sys.executable).with_name("rucio")
    whoami = subprocess.run(
        [str(rucio), "whoami"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert whoami.returncode == 0, whoami.stderr
    assert "root" in whoami.stdout
    dids = subprocess.run(
        [str(rucio), "list-dids", "cta:*", "--filter", "type=DATASET"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert dids.returncode == 0, dids.stderr
    assert "crab-2024.dl3" in dids.stdout


def test_ls_find_info_replicas(lake_env: dict[str, str]) -> None:
    ls = run(lake_env, "ls", "--json")
    assert "cta" in json.loads(ls.stdout)
    page = json.loads(run(lake_env, "ls", "scale:files-100k", "--limit", "5", "--json").stdout)
    assert len(page["files"]) == 5 and page["next_cursor"]
    nxt = json.loads(
        run(
            lake_env,
            "ls",
            "scale:files-100k",
            "--limit",
            "5",
            "--cursor",
            page["next_cursor"],
            "--json",
        ).stdout
    )
    assert nxt["files"][0]["name"] == "files-100k.000005.dat"
    found = run(lake_env, "find", "cta:*", "--type", "dataset", "--filter", "target=Crab")
    assert (
        found.returncode == 0 and "cta:crab-2024.dl3" in found.stdout and "2 found" in found.stdout
    )
    info = json.loads(run(lake_env, "info", "cta:crab-2024.dl3", "--json").stdout)
    assert info["metadata"]["target"] == "Crab" and info["parents"] == ["cta:crab-2024"]
    reps = run(lake_env, "replicas", "cta:crab-2024.dl3")
    assert "DESY-DISK" in reps.stdout and "4/4" in reps.stdout


def test_exit_codes_and_messages(lake_env: dict[str, str]) -> None:
    bad = run(lake_env, "info", "nocolon")
    assert bad.returncode == 2 and "error:" in bad.stderr and "scope:name" in bad.stderr
    missing = run(lake_env, "info", "cta:nothing-here")
    assert missing.returncode == 3 and "No such data identifier" in missing.stderr
    env = dict(lake_env, ESCAPE_PORTAL_LAKE_DIR="/nonexistent/lake")
    none = run(env, "ls")
    assert none.returncode == 2 and "lake up" in none.stderr


def test_lake_up_on_an_unusable_data_directory(lake_env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    result = run(dict(lake_env, ESCAPE_PORTAL_LAKE_DIR=str(not_a_folder)), "lake", "up")
    assert result.returncode == 7, result.stderr
    assert "Traceback" not in result.stderr
    assert f"data directory {not_a_folder} cannot be used: Not a directory" in result.stderr


def test_where_make_available_and_open(lake_env: dict[str, str], fresh_dataset) -> None:  # type: ignore[no-untyped-def]
    did = str(fresh_dataset)
    where = json.loads(run(lake_env, "where", did, "--json").stdout)
    assert where["needs_transfer"] and where["destination"] == "CERN-DISK"
    assert where["sources"][0]["rse"] == "PIC-DISK"
    done = run(lake_env, "make-available", did, "--wait", "--timeout", "120")
    assert done.returncode == 0, done.stderr
    assert "created -> CERN-DISK" in done.stderr and "available" in done.stdout
    assert "files" in done.stderr  # the progress bar's postfix
    again = json.loads(run(lake_env, "make-available", did, "--json").stdout)[0]
    # Nothing more to copy: no rule, or (while Rucio's summary catches up) the same one reused.
    assert again["state"] == "available" and (again["rule"] is None or not again["created"])
    opened = json.loads(run(lake_env, "open", did, "--json", "--no-download").stdout)
    assert {row["way"] for row in opened} == {"mounted"} and len(opened) == 3


def test_tour_runs_to_the_end(lake_env: dict[str, str]) -> None:
    tour = run(lake_env, "tour")
    assert tour.returncode == 0, tour.stdout + tour.stderr
    assert "already at CERN-DISK" in tour.stdout or "CERN-DISK" in tour.stdout
    assert "events, energies" in tour.stdout and tour.stdout.rstrip().endswith("from_instance()")


def test_download_copies_verified_files(lake_env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    from escape_portal.integrity import adler32_of

    env = dict(lake_env, ESCAPE_PORTAL_CACHE=str(tmp_path / "cache"))
    out = run(env, "download", "lofar:lotss-dr2.hetdex", "--to", str(tmp_path / "out"), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 4
    listing = json.loads(run(env, "ls", "lofar:lotss-dr2.hetdex", "--json").stdout)["files"]
    sums = {f["name"]: f["adler32"] for f in listing}
    from pathlib import Path

    for row in rows:
        path = Path(row["path"])
        assert adler32_of(path) == sums[path.name]
