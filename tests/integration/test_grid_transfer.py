"""Copies through the storage's own protocols (gfal2, davs third-party copy, tokens)."""

from __future__ import annotations

import os
import time
import zlib
from pathlib import Path

import pytest

from escape_portal.embedded.layout import read_state
from escape_portal.embedded.supervisor import EmbeddedLake, _free_port
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


def _url(state: dict, rse: str, path: str) -> str:  # type: ignore[type-arg]
    return f"davs://localhost:{state[f'xrootd_{rse}_https']}/{rse}/{path}"


@pytest.fixture()
def source(embedded_lake: EmbeddedLake) -> tuple[str, bytes]:
    data = os.urandom(100_000)
    name = f"user/escape/grid-copy/{time.time_ns()}.dat"
    path = embedded_lake.paths.rse_dir("DESY-DISK") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # in place, as seeding writes
    return name, data


def test_davs_third_party_copy_checks_adler32(embedded_lake: EmbeddedLake, source) -> None:  # type: ignore[no-untyped-def]
    from escape_portal.embedded.gfal import GridCopyError, copy, copy_token

    state = read_state(embedded_lake.paths)
    assert state
    name, data = source
    src, dst = _url(state, "DESY-DISK", name), _url(state, "PIC-DISK", name)
    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    certs = embedded_lake.paths.pki / "certificates"
    copy(
        src, dst, token=copy_token(embedded_lake.paths, src, dst), adler32=checksum, cert_dir=certs
    )
    assert (embedded_lake.paths.rse_dir("PIC-DISK") / name).read_bytes() == data

    other = _url(state, "LAPP-DISK", name)
    with pytest.raises(GridCopyError, match=r"(?i)checksum"):
        copy(
            src,
            other,
            token=copy_token(embedded_lake.paths, src, other),
            adler32="00000001",
            cert_dir=certs,
        )


def test_failures_end_with_the_storage_reason(
    embedded_lake: EmbeddedLake, source, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from escape_portal.embedded.gfal import GridCopyError, copy, copy_token

    state = read_state(embedded_lake.paths)
    assert state
    name, _ = source
    certs = embedded_lake.paths.pki / "certificates"
    src, dst = _url(state, "DESY-DISK", name), _url(state, "LAPP-DISK", f"{name}.2")

    missing = _url(state, "DESY-DISK", name + ".missing")
    with pytest.raises(GridCopyError, match=r"(?i)(404|no such file|not found)"):
        copy(
            missing,
            dst,
            token=copy_token(embedded_lake.paths, missing, dst),
            adler32=None,
            cert_dir=certs,
        )

    # A token for another destination: LAPP-DISK refuses it.
    pic = _url(state, "PIC-DISK", "x")
    with pytest.raises(GridCopyError, match="403"):
        copy(
            src, dst, token=copy_token(embedded_lake.paths, src, pic), adler32=None, cert_dir=certs
        )

    down = f"davs://localhost:{_free_port()}/LAPP-DISK/{name}.3"
    with pytest.raises(GridCopyError, match=r"(?i)(connect|refused)"):
        copy(
            src,
            down,
            token=copy_token(embedded_lake.paths, src, down),
            adler32=None,
            cert_dir=certs,
            timeout=20,
        )


def test_rule_between_xrootd_storage_copies_over_davs(
    lake: Lake, embedded_lake: EmbeddedLake, fresh_dataset: DID
) -> None:
    """The conveyor hands PIC-DISK -> DESY-DISK to gfal: the destination server writes it."""
    import pwd

    from escape_portal.events import wait_for

    rule, _ = lake.add_rule(fresh_dataset, "DESY-DISK", lifetime=600)
    progress = wait_for(lake, rule.id, timeout=180, first_interval=0.5, max_interval=2)
    assert progress.state == "available", progress
    for rep in lake.file_replicas(DID(f.scope, f.name) for f in lake.files(fresh_dataset)):
        path = rep.local_path("DESY-DISK")
        assert path is not None and path.exists()
        if os.geteuid() == 0:  # written by the xrootd user, i.e. through XRootD
            assert path.stat().st_uid == pwd.getpwnam("xrootd").pw_uid
