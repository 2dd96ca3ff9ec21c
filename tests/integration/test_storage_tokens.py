"""The embedded storage through the real XRootD servers: root:// and davs:// with tokens.

Every request here goes to a running ``xrootd`` (one per storage element) over TLS with
the lake's CA, carrying a WLCG-profile token signed by the lake's issuer key.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests

from escape_portal.embedded import xrootd
from escape_portal.embedded.layout import read_state
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.embedded.tokens import issuer_url, mint, signing_key, storage_audience
from escape_portal.lake import DID, Lake

pytestmark = pytest.mark.lake

RSE = "DESY-DISK"


@pytest.fixture()
def state(embedded_lake: EmbeddedLake) -> dict[str, Any]:
    found = read_state(embedded_lake.paths)
    assert found is not None
    return found


@pytest.fixture()
def token(embedded_lake: EmbeddedLake, state: dict[str, Any]):  # type: ignore[no-untyped-def]
    key = signing_key(embedded_lake.paths.root)

    def make(
        rse: str = RSE, scopes: tuple[str, ...] = ("storage.read:/",), lifetime: float = 600
    ) -> str:
        return mint(
            key,
            issuer=issuer_url(state["idp_port"]),
            subject="escape-test",
            audience=storage_audience(rse),
            scopes=scopes,
            lifetime=lifetime,
        )

    return make


@pytest.fixture()
def ca(embedded_lake: EmbeddedLake) -> str:
    return str(embedded_lake.paths.pki / "ca.pem")


@pytest.fixture()
def sample(operator_lake: Lake, embedded_lake: EmbeddedLake) -> tuple[DID, bytes]:
    """A fresh file at DESY-DISK, written in place as seeding writes (real bytes)."""
    lake = operator_lake  # replicas are registered by the operator
    data = os.urandom(200_000)
    did = DID("user.escape", f"xrootd-{time.time_ns()}.dat")
    lake.client.add_replicas(
        RSE,
        [
            {
                "scope": did.scope,
                "name": did.name,
                "bytes": len(data),
                "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}",
            }
        ],
    )
    path = next(iter(lake.file_replicas([did]))).local_path(RSE)
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return did, data


def _pfn(lake: Lake, did: DID, scheme: str) -> str:
    rows = list(lake.client.list_replicas([did.as_rucio()], schemes=[scheme]))
    pfns = [p for p, meta in rows[0]["pfns"].items() if meta["rse"] == RSE]
    assert pfns, f"no {scheme} replica of {did} at {RSE}: {rows}"
    return pfns[0]


def _bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_rucio_offers_root_and_davs(lake: Lake, sample: tuple[DID, bytes], state) -> None:  # type: ignore[no-untyped-def]
    did, _ = sample
    root, https = (state[k] for k in xrootd.port_keys(RSE))
    assert _pfn(lake, did, "davs").startswith(f"davs://localhost:{https}/{RSE}/user/escape/")
    assert _pfn(lake, did, "root").startswith(f"root://localhost:{root}//{RSE}/user/escape/")
    attributes = lake.client.list_rse_attributes(RSE)
    assert attributes["oidc_support"] is True
    assert attributes["oidc_base_path"] == f"/{RSE}"


def test_https_reads_with_a_valid_token(lake: Lake, sample, token, ca) -> None:  # type: ignore[no-untyped-def]
    did, data = sample
    url = "https" + _pfn(lake, did, "davs")[len("davs") :]
    whole = requests.get(url, headers=_bearer(token()), verify=ca, timeout=10)
    assert whole.status_code == 200 and whole.content == data
    part = requests.get(
        url, headers={**_bearer(token()), "Range": "bytes=100-199"}, verify=ca, timeout=10
    )
    assert part.status_code == 206 and part.content == data[100:200]


def test_https_refuses_bad_tokens(lake: Lake, sample, token, ca) -> None:  # type: ignore[no-untyped-def]
    did, _ = sample
    url = "https" + _pfn(lake, did, "davs")[len("davs") :]
    assert requests.get(url, verify=ca, timeout=10).status_code == 403
    expired = token(lifetime=-60)
    assert requests.get(url, headers=_bearer(expired), verify=ca, timeout=10).status_code == 403
    other = token(rse="PIC-DISK")  # another storage element's audience
    assert requests.get(url, headers=_bearer(other), verify=ca, timeout=10).status_code == 403


def test_https_write_needs_modify_scope(lake: Lake, token, ca, state) -> None:  # type: ignore[no-untyped-def]
    url = f"https://localhost:{state[xrootd.port_keys(RSE)[1]]}/{RSE}/user/escape/put-test/{time.time_ns()}.dat"
    body = b"written through WebDAV\n"
    read_only = requests.put(url, data=body, headers=_bearer(token()), verify=ca, timeout=10)
    assert read_only.status_code == 403
    modify = token(scopes=("storage.modify:/", "storage.read:/"))
    written = requests.put(url, data=body, headers=_bearer(modify), verify=ca, timeout=10)
    assert written.status_code in (200, 201)
    back = requests.get(url, headers=_bearer(token()), verify=ca, timeout=10)
    assert back.content == body
    assert requests.delete(url, headers=_bearer(modify), verify=ca, timeout=10).status_code in (
        200,
        204,
    )


def test_adler32_digest_equals_rucio(lake: Lake, sample, token, ca) -> None:  # type: ignore[no-untyped-def]
    did, _ = sample
    url = "https" + _pfn(lake, did, "davs")[len("davs") :]
    head = requests.head(
        url, headers={**_bearer(token()), "Want-Digest": "adler32"}, verify=ca, timeout=10
    )
    assert head.status_code == 200
    rucio = lake.client.get_metadata(did.scope, did.name)["adler32"]
    assert head.headers["Digest"] == f"adler32={rucio}"


def test_seeded_data_readable_through_xrootd(lake: Lake, embedded_lake, token, ca) -> None:  # type: ignore[no-untyped-def]
    """A seeded science file at CERN-DISK (written in place): davs, checksum equal."""
    rse = "CERN-DISK"
    folder = embedded_lake.paths.rse_dir(rse)
    seeded = next(
        (
            p
            for p in sorted(folder.glob("*/*/*/*.fits"))
            if p.relative_to(folder).parts[0] != "user"
        ),
        None,
    )
    if seeded is None:
        pytest.skip("nothing seeded at CERN-DISK")
    did = DID(seeded.relative_to(folder).parts[0], seeded.name)
    row = next(iter(lake.client.list_replicas([did.as_rucio()], schemes=["davs"])))
    pfn = next(p for p, meta in row["pfns"].items() if meta["rse"] == rse)
    head = requests.head(
        "https" + pfn[len("davs") :],
        headers={**_bearer(token(rse=rse)), "Want-Digest": "adler32"},
        verify=ca,
        timeout=10,
    )
    assert head.status_code == 200
    assert head.headers["Digest"] == f"adler32={row['adler32']}"


def test_root_reads_with_a_token(lake: Lake, sample, token, embedded_lake) -> None:  # type: ignore[no-untyped-def]
    from XRootD import client
    from XRootD.client.flags import QueryCode

    did, data = sample
    url = _pfn(lake, did, "root")
    os.environ["X509_CERT_DIR"] = str(embedded_lake.paths.pki / "certificates")
    with_token = f"{url}?authz=Bearer%20{token()}"
    handle = client.File()
    status, _ = handle.open(with_token, timeout=10)
    assert status.ok, status.message
    status, chunk = handle.read(1000, 24, timeout=10)
    handle.close()
    assert status.ok and chunk == data[1000:1024]

    server, path = url.split("//", 2)[1], "/" + url.split("//", 2)[2]
    filesystem = client.FileSystem(f"root://{server}")
    status, answer = filesystem.query(QueryCode.CHECKSUM, f"{path}?authz=Bearer%20{token()}")
    assert status.ok, status.message
    rucio = lake.client.get_metadata(did.scope, did.name)["adler32"]
    assert answer.decode().strip("\x00").split() == ["adler32", rucio]

    refused = client.File()
    status, _ = refused.open(url, timeout=10)
    assert not status.ok and "permission denied" in status.message.lower()


def test_xrdcp_with_bearer_token(lake: Lake, sample, token, embedded_lake, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The CLI the grid uses, with the token in BEARER_TOKEN (the ztn protocol)."""
    did, data = sample
    env = {
        **os.environ,
        "X509_CERT_DIR": str(embedded_lake.paths.pki / "certificates"),
        "BEARER_TOKEN": token(),
    }
    target = tmp_path / "copy.dat"
    subprocess.run(
        ["xrdcp", "--nopbar", _pfn(lake, did, "root"), str(target)],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
    )
    assert target.read_bytes() == data


def test_every_listener_is_on_loopback(embedded_lake: EmbeddedLake, state) -> None:  # type: ignore[no-untyped-def]
    listing = subprocess.run(
        ["ss", "-ltnpH"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    for rse in xrootd.XROOTD_RSES:
        pid = state["pids"][xrootd.component(rse)]
        mine = [line for line in listing.splitlines() if f"pid={pid}," in line]
        ports = {int(re.split(r"\s+", line)[3].rsplit(":", 1)[1]) for line in mine}
        assert ports == {state[k] for k in xrootd.port_keys(rse)}, mine
        for line in mine:
            assert re.split(r"\s+", line)[3].startswith("127.0.0.1:"), line
