"""The XRootD configuration the lake writes, and scitokens-cpp's key cache it seeds."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from escape_portal.embedded import xrootd
from escape_portal.embedded.layout import LakePaths
from escape_portal.embedded.tokens import issuer_url, signing_key, storage_audience


def test_storage_audience_is_per_rse_and_port_free() -> None:
    assert storage_audience("CERN-DISK") == "https://localhost/rse/CERN-DISK"
    assert storage_audience("CERN-DISK") != storage_audience("DESY-DISK")


def test_config_names_ports_tls_tokens_and_checksums(tmp_path: Path) -> None:
    paths = LakePaths(tmp_path)
    paths.make()
    endpoint = xrootd.XRootDEndpoint("PIC-DISK", 1094, 1443)
    config = xrootd.write_config(paths, endpoint, issuer_url(8443)).read_text()
    for directive in (
        "xrd.port 1094",
        "xrd.protocol XrdHttp:1443 libXrdHttp.so",
        "all.export /PIC-DISK/",
        f"oss.localroot {paths.rse_root}",
        "xrootd.chksum adler32",
        "http.header2cgi Authorization authz",
        "ofs.authorize 1",
        "http.exthandler xrdtpc libXrdHttpTPC.so",
    ):
        assert directive in config
    folder = paths.etc / "xrootd" / "PIC-DISK"
    scitokens = (folder / "scitokens.cfg").read_text()
    assert "audience = https://localhost/rse/PIC-DISK" in scitokens
    assert "issuer = https://localhost:8443" in scitokens
    assert "base_path = /PIC-DISK" in scitokens
    assert (folder / "tls" / "host.key").stat().st_mode & 0o777 == 0o400
    assert endpoint.root_url == "root://localhost:1094//PIC-DISK/"


def test_key_cache_holds_the_issuer_keys_far_ahead(tmp_path: Path) -> None:
    jwks = signing_key(tmp_path).jwks()
    database = xrootd.seed_key_cache(tmp_path / "cache", "https://localhost:1", jwks)
    xrootd.seed_key_cache(tmp_path / "cache", "https://localhost:1", jwks)  # idempotent
    rows = sqlite3.connect(database).execute("SELECT issuer, keys FROM keycache").fetchall()
    assert len(rows) == 1 and rows[0][0] == "https://localhost:1"
    entry = json.loads(rows[0][1])
    assert entry["jwks"] == jwks
    assert entry["next_update"] > time.time() + 365 * 86400
    assert entry["expires"] >= entry["next_update"]
