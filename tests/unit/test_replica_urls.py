"""Replica URLs as web clients spell them: davs published as https, mapped back to DIDs."""

from escape_portal.lake import DID
from escape_portal.lake.client import _did_from_url, _normal_url
from escape_portal.lake.models import FileReplicas, web_url

PROTOCOLS = {
    "DESY-DISK": [
        {"scheme": "root", "hostname": "localhost", "port": 1094, "prefix": "//DESY-DISK/"},
        {"scheme": "davs", "hostname": "localhost", "port": 8443, "prefix": "/DESY-DISK/"},
    ]
}
PATH = "/DESY-DISK/cta/fc/a6/crab.fits"


def test_davs_is_given_as_https_and_nothing_else_changes() -> None:
    assert web_url(f"davs://localhost:8443{PATH}") == f"https://localhost:8443{PATH}"
    for url in (f"https://h{PATH}", f"http://h{PATH}", f"root://h/{PATH}", "file:///x"):
        assert web_url(url) == url
    replicas = FileReplicas(
        "cta", "crab.fits", 1, None, {"DESY-DISK": "AVAILABLE"},
        {"DESY-DISK": [f"root://localhost:1094/{PATH}", f"davs://localhost:8443{PATH}"]},
    )  # fmt: skip
    assert replicas.url("DESY-DISK") == f"https://localhost:8443{PATH}"
    assert replicas.url("DESY-DISK", ("root",)) == f"root://localhost:1094/{PATH}"
    assert replicas.url("CERN-DISK") is None


def test_an_https_url_maps_to_the_davs_protocol_of_its_storage() -> None:
    found = (DID("cta", "crab.fits"), "DESY-DISK")
    assert _did_from_url(f"https://localhost:8443{PATH}", PROTOCOLS) == found
    assert _did_from_url(f"https://127.0.0.1:8443{PATH}", PROTOCOLS) == found
    assert _did_from_url(f"davs://localhost:8443{PATH}", PROTOCOLS) == found
    assert _did_from_url(f"http://localhost:8443{PATH}", PROTOCOLS) is None  # not the same
    assert _did_from_url(f"https://localhost:9999{PATH}", PROTOCOLS) is None  # another port
    assert _normal_url(f"davs://localhost:8443{PATH}") == _normal_url(
        f"https://127.0.0.1:8443{PATH}"
    )
