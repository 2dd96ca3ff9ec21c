"""Copies through the storage's own protocols (gfal2, davs third-party copy, tokens)."""

from __future__ import annotations

import os
import re
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests

from escape_portal.embedded import tokens
from escape_portal.embedded.layout import DEMO_CLIENTS, read_state
from escape_portal.embedded.supervisor import EmbeddedLake, _free_port
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake


def _url(state: dict, rse: str, path: str) -> str:  # type: ignore[type-arg]
    return f"davs://localhost:{state[f'xrootd_{rse}_https']}/{rse}/{path}"


#: What a JWT looks like in a text: header and payload, base64url JSON objects.
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}")


def _token(state: dict[str, Any], url: str, scope: str) -> str:
    """A token from the lake's provider for the storage of ``url`` (client credentials)."""
    from escape_portal.embedded.gfal import rse_of

    answer = requests.post(
        f"{state['idp_url']}/token",
        data={
            "grant_type": "client_credentials",
            "audience": tokens.storage_audience(rse_of(url)),
            "scope": scope,
        },
        auth=("rucio-transfers", DEMO_CLIENTS["rucio-transfers"]),
        verify=state["ca_cert"],
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _tokens(state: dict[str, Any], src: str, dst: str) -> dict[str, str]:
    """Tokens per end, as Rucio gives FTS: read at the source, modify and read at the end."""
    return {
        "source_token": _token(state, src, "storage.read:/"),
        "destination_token": _token(state, dst, "storage.modify:/ storage.read:/"),
    }


@pytest.fixture()
def source(embedded_lake: EmbeddedLake) -> tuple[str, bytes]:
    data = os.urandom(100_000)
    name = f"user/escape/grid-copy/{time.time_ns()}.dat"
    path = embedded_lake.paths.rse_dir("DESY-DISK") / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)  # in place, as seeding writes
    return name, data


def test_davs_third_party_copy_checks_adler32(embedded_lake: EmbeddedLake, source) -> None:  # type: ignore[no-untyped-def]
    from escape_portal.embedded.gfal import GridCopyError, copy

    state = read_state(embedded_lake.paths)
    assert state
    name, data = source
    src, dst = _url(state, "DESY-DISK", name), _url(state, "PIC-DISK", name)
    checksum = f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"
    certs = embedded_lake.paths.pki / "certificates"
    copy(src, dst, **_tokens(state, src, dst), adler32=checksum, cert_dir=certs)
    assert (embedded_lake.paths.rse_dir("PIC-DISK") / name).read_bytes() == data

    other = _url(state, "LAPP-DISK", name)
    with pytest.raises(GridCopyError, match=r"(?i)checksum"):
        copy(
            src,
            other,
            **_tokens(state, src, other),
            adler32="00000001",
            cert_dir=certs,
        )


def test_failures_end_with_the_storage_reason(
    embedded_lake: EmbeddedLake, source, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from escape_portal.embedded.gfal import GridCopyError, copy

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
            **_tokens(state, missing, dst),
            adler32=None,
            cert_dir=certs,
        )

    # A token for another destination: LAPP-DISK refuses it.
    pic = _url(state, "PIC-DISK", "x")
    wrong = {
        **_tokens(state, src, dst),
        "destination_token": _token(state, pic, "storage.modify:/"),
    }
    with pytest.raises(GridCopyError, match="403"):
        copy(src, dst, **wrong, adler32=None, cert_dir=certs)

    # A source token for another storage: the source refuses what the destination forwards.
    wrong_source = {
        **_tokens(state, src, dst),
        "source_token": _token(state, pic, "storage.read:/"),
    }
    with pytest.raises(GridCopyError, match="403"):
        copy(src, dst, **wrong_source, adler32=None, cert_dir=certs)

    # A read-only token for the destination: refused too.
    read_only = {
        **_tokens(state, src, dst),
        "destination_token": _token(state, dst, "storage.read:/"),
    }
    with pytest.raises(GridCopyError, match=r"HTTP 40[13]"):  # XRootD's TPC answers 401
        copy(src, dst, **read_only, adler32=None, cert_dir=certs)

    down = f"davs://localhost:{_free_port()}/LAPP-DISK/{name}.3"
    with pytest.raises(GridCopyError, match=r"(?i)(connect|refused)"):
        copy(
            src,
            down,
            **_tokens(state, src, down),
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

    # The tokens were Rucio's own requests to the provider (client credentials of its
    # [oidc] admin client, cached while valid), one per end, as Rucio gives FTS ...
    logs = embedded_lake.paths.logs
    idp_log = (logs / "idp.log").read_text()
    for audience, scope in (
        (tokens.storage_audience("PIC-DISK"), "offline_access storage.read:/"),
        (tokens.storage_audience("DESY-DISK"), "offline_access storage.modify:/ storage.read:/"),
    ):
        assert f"client rucio, subject rucio, audience {audience}, scope {scope!r}" in idp_log
    assert re.search(r'"POST /token" 200', idp_log)
    # ... and no token reached a log.
    for log in logs.glob("*.log"):
        assert not JWT.search(log.read_text(errors="replace")), log.name
    for rep in lake.file_replicas(DID(f.scope, f.name) for f in lake.files(fresh_dataset)):
        path = rep.local_path("DESY-DISK")
        assert path is not None and path.exists()
        if os.geteuid() == 0:  # written by the xrootd user, i.e. through XRootD
            assert path.stat().st_uid == pwd.getpwnam("xrootd").pw_uid


def test_copies_from_and_to_infn_na_disk_stay_posix(lake: Lake, fresh_dataset: DID) -> None:
    """INFN-NA-DISK is served by XRootD, but its third-party copies match ``file`` only."""
    from rucio.rse import rsemanager

    from escape_portal.events import wait_for

    def settings(rse: str) -> dict[str, Any]:
        return {"protocols": lake.client.get_protocols(rse)}

    schemes = {p["scheme"] for p in lake.client.get_protocols("INFN-NA-DISK")}
    assert schemes == {"file", "root", "davs"}  # served by XRootD, no anonymous http
    for src, dst in (("INFN-NA-DISK", "CERN-DISK"), ("PIC-DISK", "INFN-NA-DISK")):
        match = rsemanager.find_matching_scheme(
            settings(dst), settings(src), "third_party_copy_read", "third_party_copy_write"
        )
        assert match[:2] == ("file", "file"), (src, dst, match)
    assert rsemanager.find_matching_scheme(
        settings("DESY-DISK"), settings("PIC-DISK"), "third_party_copy_read",
        "third_party_copy_write",
    )[:2] == ("davs", "davs")  # fmt: skip

    rule, _ = lake.add_rule(fresh_dataset, "INFN-NA-DISK", lifetime=600)
    progress = wait_for(lake, rule.id, timeout=180, first_interval=0.5, max_interval=2)
    assert progress.state == "available", progress
    for rep in lake.file_replicas(DID(f.scope, f.name) for f in lake.files(fresh_dataset)):
        path = rep.local_path("INFN-NA-DISK")
        assert path is not None and path.exists()
        if os.geteuid() == 0:  # written in place by the POSIX transfertool, not by xrootd
            assert path.stat().st_uid == 0
