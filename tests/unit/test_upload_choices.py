"""Where an upload goes, and which server paths the REST API accepts (no lake needed).

The lake is faked at its boundary only: the protocols Rucio would list per storage element.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from escape_portal.errors import InvalidRequest, NotFound, QuotaExceeded
from escape_portal.server.upload_handlers import resolve_paths
from escape_portal.topology import Link, StorageElement, Topology
from escape_portal.upload import _adler32_of_digest, _shown, choose_destination

DAVS = {"scheme": "davs", "domains": {"wan": {"read": 4, "write": 3}, "lan": {"write": 3}}}
READ_ONLY = {"scheme": "http", "domains": {"wan": {"read": 2}}}


class _Protocols:
    def __init__(self, protocols: dict[str, list[dict[str, Any]]]) -> None:
        self.protocols = protocols

    def rse_protocols(self) -> dict[str, list[dict[str, Any]]]:
        return self.protocols


def _topology() -> Topology:
    topology = Topology()
    for rse, site, free in (
        ("CERN-DISK", "CERN", 10),
        ("DESY-DISK", "DESY", 10_000),
        ("PIC-DISK", "PIC", 10_000),
        ("HTTP-DISK", "CERN", 10_000),
    ):
        topology.storage[rse] = StorageElement(rse, site, quota_bytes=free, used_bytes=0)
    topology.links[("DESY", "CERN")] = Link("DESY", "CERN", km=600.0)
    topology.links[("PIC", "CERN")] = Link("PIC", "CERN", km=900.0)
    return topology


LAKE = _Protocols(
    {"CERN-DISK": [DAVS], "DESY-DISK": [DAVS], "PIC-DISK": [DAVS], "HTTP-DISK": [READ_ONLY]}
)


def test_the_compute_site_first_then_the_nearest_with_quota() -> None:
    small = choose_destination(LAKE, _topology(), "CERN", 5)  # type: ignore[arg-type]
    assert (small.rse, small.scheme) == ("CERN-DISK", "davs")
    big = choose_destination(LAKE, _topology(), "CERN", 500)  # type: ignore[arg-type]
    assert big.rse == "DESY-DISK" and "600 km" in big.reason


def test_a_named_storage_is_checked_like_any_other() -> None:
    with pytest.raises(QuotaExceeded, match="CERN-DISK"):
        choose_destination(LAKE, _topology(), "CERN", 500, "CERN-DISK")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="no write protocol"):
        choose_destination(LAKE, _topology(), "CERN", 5, "HTTP-DISK")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        choose_destination(LAKE, _topology(), "CERN", 5, "NOWHERE")  # type: ignore[arg-type]


def test_digest_headers_and_shown_urls() -> None:
    assert _adler32_of_digest("md5=abc, adler32=2E62EEA2") == "2e62eea2"
    assert _adler32_of_digest("adler32=62eea2") == "0062eea2"
    assert _adler32_of_digest("md5=abc") is None
    assert _shown("https://u:p@h:1/a/b?authz=Bearer%20x") == "https://h:1/a/b"


def test_the_rest_api_stays_inside_the_server_folder(tmp_path: Path) -> None:
    (tmp_path / "root" / "results").mkdir(parents=True)
    (tmp_path / "root" / "results" / "a.fits").write_bytes(b"x")
    (tmp_path / "secret.txt").write_bytes(b"x")
    (tmp_path / "root" / "link.txt").symlink_to(tmp_path / "secret.txt")
    root = tmp_path / "root"
    assert resolve_paths(root, ["results/a.fits"]) == [(root / "results" / "a.fits").resolve()]
    for bad in ("../secret.txt", "/etc/passwd", "link.txt", "results/../../secret.txt"):
        with pytest.raises(InvalidRequest):
            resolve_paths(root, [bad])
    with pytest.raises(NotFound):
        resolve_paths(root, ["results/missing.fits"])


def test_storage_that_is_down_is_said_in_one_line(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from escape_portal.errors import LakeUnavailable
    from escape_portal.upload import _Dav

    # Nothing listens on the discard port: a real connection refused.
    lake = SimpleNamespace(config=SimpleNamespace(ca_cert=None, timeout=2.0))
    dav = _Dav(lake, "CERN-DISK", "secret-token")  # type: ignore[arg-type]
    with pytest.raises(LakeUnavailable) as caught:
        dav.stat("https://127.0.0.1:9/CERN-DISK/user/alice/ab/cd/x.fits?authz=secret-token")
    message = str(caught.value)
    assert "Storage CERN-DISK (127.0.0.1:9) cannot be reached" in message
    assert "\n" not in message and "secret-token" not in message


def test_meta_pairs_of_the_cli() -> None:
    from escape_portal.cli import _meta_pairs

    assert _meta_pairs(["target=Crab", "run=7", "ra=83.63", "note=a=b"]) == {
        "target": "Crab",
        "run": 7,
        "ra": 83.63,
        "note": "a=b",
    }
    with pytest.raises(InvalidRequest):
        _meta_pairs(["no-equals"])
