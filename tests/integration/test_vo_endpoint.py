"""The embedded lake's VO endpoint, through unmodified pyvo (and STILTS taplint if present)."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake

pytestmark = pytest.mark.lake

CRAB = (83.6331, 22.0145)


@pytest.fixture(scope="module")
def vo_url(embedded_lake: EmbeddedLake, lake_config: LakeConfig) -> str:
    assert lake_config.vo_url, "lake up did not publish vo_url"
    response = requests.get(f"{lake_config.vo_url}/tap/availability", timeout=10)
    assert response.ok
    return lake_config.vo_url


@pytest.fixture(scope="module")
def astropy_cache(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An isolated astropy cache, seeded with the vocabulary pyvo ships (never fetched)."""
    root = tmp_path_factory.mktemp("astropy")
    for sub in ("cache/astropy", "config/astropy"):
        (root / sub).mkdir(parents=True)
    return {"XDG_CACHE_HOME": str(root / "cache"), "XDG_CONFIG_HOME": str(root / "config")}


def _pyvo(script: str, vo_url: str, env_extra: dict[str, str]) -> str:
    """Run pyvo in a fresh interpreter (IVOA_REGISTRY is read at import), warnings as errors."""
    prologue = textwrap.dedent(
        f"""
        import warnings
        warnings.simplefilter("error")
        from pathlib import Path
        import pyvo
        from astropy.utils.data import import_file_to_cache
        import_file_to_cache(
            "http://www.ivoa.net/rdf/messenger",
            str(Path(pyvo.__file__).parent / "registry/tests/data/messenger.desise"),
            remove_original=False,
        )
        URL = {vo_url!r}
        """
    )
    env = {**os.environ, **env_extra, "IVOA_REGISTRY": f"{vo_url}/tap"}
    done = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_sia2_scs_tap_find_the_crab(vo_url: str) -> None:
    import pyvo

    sia = pyvo.dal.SIA2Service(f"{vo_url}/sia2")
    found = sia.search(pos=(*CRAB, 0.5), facility="CTAO").to_table()
    assert len(found) >= 6
    assert set(found["target_name"]) == {"Crab"}
    assert all(str(d).startswith("ivo://escape.eu/lake?cta:") for d in found["obs_publisher_did"])
    scs = pyvo.dal.SCSService(f"{vo_url}/scs/query")
    cone = scs.search(pos=CRAB, radius=0.1).to_table()
    assert "cta:crab-2024.dl3.0001.fits" in set(cone["lake_did"])
    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    result = tap.search(
        "SELECT obs_publisher_did, lake_dataset, facility_name, s_region FROM ivoa.obscore "
        f"WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {CRAB[0]}, {CRAB[1]}, 1)) = 1"
    ).to_table()
    assert set(result["facility_name"]) == {"CTAO"}
    assert {"cta:crab-2024.dl3", "cta:crab-2024.sky"} <= set(result["lake_dataset"])
    assert str(result["s_region"][0]).startswith("Circle ICRS")
    assert "s_ra" in [c.name for c in tap.tables["ivoa.obscore"].columns]


def test_tap_overflow_and_errors(vo_url: str) -> None:
    import pyvo

    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    assert len(tap.search("SELECT obs_id FROM ivoa.obscore", maxrec=3)) == 3
    body = requests.get(
        f"{vo_url}/tap/sync",
        params={"LANG": "ADQL", "QUERY": "SELECT obs_id FROM ivoa.obscore", "MAXREC": "2"},
        timeout=10,
    ).text
    assert '<INFO name="QUERY_STATUS" value="OVERFLOW"/>' in body
    with pytest.raises(pyvo.dal.DALQueryError, match="Unknown table 'secrets'"):
        tap.search("SELECT * FROM secrets")
    with pytest.raises(pyvo.dal.DALQueryError, match="Only SELECT"):
        tap.search("DELETE FROM ivoa.obscore")
    response = requests.post(
        f"{vo_url}/tap/sync", data={"LANG": "ADQL", "QUERY": "SELEC x FRM"}, timeout=10
    )
    assert response.status_code == 400 and 'value="ERROR"' in response.text


def test_datalink_this_downloads_the_file(
    vo_url: str, lake_config: LakeConfig, researcher_config: LakeConfig
) -> None:
    import pyvo

    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    row = tap.search(
        "SELECT access_url, lake_did FROM ivoa.obscore "
        "WHERE lake_did = 'ska:sdc2.continuum.0001.fits'"
    ).to_table()[0]
    links = pyvo.dal.DALResults.from_result_url(str(row["access_url"])).to_table()
    this = [r for r in links if r["semantics"] == "#this"]
    # The storage's davs replicas, spelled https: no anonymous http any more.
    assert this and all(str(r["access_url"]).startswith("https://localhost:") for r in this)
    distances = [float(r["distance_km"]) for r in this]
    assert distances == sorted(distances)
    assert this[0]["site"] == lake_config.compute_site  # its home, CERN, is nearest
    from urllib.parse import urlsplit

    from escape_portal.lake import DID, Lake

    url, rse = str(this[0]["access_url"]), str(this[0]["rse"])
    ca = str(researcher_config.ca_cert)
    assert requests.get(url, verify=ca, timeout=30).status_code in (401, 403)  # needs a token
    alice = Lake(researcher_config)
    token = alice.storage_token(rse, urlsplit(url).path)
    data = requests.get(url, headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30)
    assert data.status_code == 200
    replica = next(iter(alice.file_replicas([str(row["lake_did"])])))
    assert f"{zlib.adler32(data.content) & 0xFFFFFFFF:08x}" == replica.adler32
    # The portal maps the published URL back to the lake file.
    assert alice.dids_from_urls([url]) == {url: (DID.parse(str(row["lake_did"])), rse)}
    from_pic = requests.get(
        f"{vo_url}/datalink/links", params={"ID": this[0]["ID"], "SITE": "PIC"}, timeout=30
    ).text
    assert "#this" in from_pic
    unknown = requests.get(
        f"{vo_url}/datalink/links", params={"ID": "ivo://escape.eu/lake?cta:nope.fits"}, timeout=30
    ).text
    assert "NotFoundFault" in unknown


def test_resolver(vo_url: str) -> None:
    answer = requests.get(f"{vo_url}/resolve", params={"name": "crab"}, timeout=10)
    assert answer.json() == {"name": "Crab", "ra": CRAB[0], "dec": CRAB[1]}
    missing = requests.get(f"{vo_url}/resolve", params={"name": "Vega"}, timeout=10)
    assert missing.status_code == 404 and "Known targets" in missing.json()["hint"]


def test_registry_search_finds_the_lake(
    vo_url: str, astropy_cache: dict[str, str], embedded_lake: EmbeddedLake
) -> None:
    extra = embedded_lake.paths.root / "vo" / "registry-extra.json"
    assert not extra.exists() or extra.read_text()  # optional; we only read it
    out = _pyvo(
        """
        from pyvo import registry
        sia = registry.search(keywords=["gamma"], servicetype="sia2", waveband="gamma-ray")
        print("SIA2", [r.ivoid for r in sia])
        tap = registry.search(keywords=["lake"], servicetype="tap")
        print("TAP", [r.ivoid for r in tap], tap[0].get_service("tap").baseurl)
        scs = registry.search(servicetype="scs", waveband="neutrino")
        print("SCS", [r.ivoid for r in scs], scs[0].get_service("scs").baseurl)
        none = registry.search(keywords=["xyzzy-nothing"])
        print("NONE", len(none))
        """,
        vo_url,
        astropy_cache,
    )
    assert "SIA2 ['ivo://escape.eu/lake/sia2']" in out
    assert f"TAP ['ivo://escape.eu/lake/tap'] {vo_url}/tap" in out
    assert f"SCS ['ivo://escape.eu/lake/scs'] {vo_url}/scs/query" in out
    assert "NONE 0" in out


@pytest.mark.skipif(shutil.which("stilts") is None, reason="STILTS is not installed "
                    "(Debian: apt-get install stilts); taplint is skipped")  # fmt: skip
def test_taplint_has_no_errors(vo_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        ["stilts", "taplint", f"tapurl={vo_url}/tap", "stages=-QAS -UPL -EXA",
         "report=EW", "maxtable=5"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )  # fmt: skip
    summary = [line for line in done.stdout.splitlines() if line.startswith("Totals")]
    assert summary and "Errors: 0" in summary[-1], done.stdout[-4000:]


@pytest.mark.skipif(shutil.which("stilts") is None, reason="STILTS is not installed "
                    "(Debian: apt-get install stilts); datalinklint is skipped")  # fmt: skip
@pytest.mark.parametrize(
    "did", ["ska:sdc2.continuum.0001.fits", "cta:nope.fits", "cta:crab-2024.dl3"]
)
def test_datalinklint_has_no_errors(vo_url: str, did: str, tmp_path: Path) -> None:
    # Known, unknown and not-a-file IDs: error rows too must follow the standard.
    done = subprocess.run(
        ["stilts", "datalinklint", f"votable={vo_url}/datalink/links?ID=ivo://escape.eu/lake?{did}",
         "report=EW"],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    summary = [line for line in done.stdout.splitlines() if line.startswith("Totals")]
    assert summary and "Errors: 0" in summary[-1], done.stdout[-4000:]


@pytest.fixture()
def unread_redirects() -> Iterator[None]:
    """Ignore the socket pyvo 1.9.1 leaks when it creates a job.

    ``AsyncTAPJob.create`` POSTs with ``stream=True`` and follows our 303 to the job, but
    never reads or closes that response (it GETs the job again); its socket is freed
    unclosed, a ResourceWarning that pytest would report on whichever test runs next.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield
        gc.collect()


QUERY_CRAB = (
    "SELECT obs_publisher_did, facility_name FROM ivoa.obscore "
    f"WHERE CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {CRAB[0]}, {CRAB[1]}, 1)) = 1 "
    "ORDER BY obs_publisher_did"
)


@pytest.mark.usefixtures("unread_redirects")
def test_tap_async_gives_the_sync_rows(vo_url: str) -> None:
    import pyvo

    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    async_rows = tap.run_async(QUERY_CRAB, timeout=60).to_table()
    sync_rows = tap.run_sync(QUERY_CRAB).to_table()
    assert len(async_rows) >= 6
    assert list(async_rows["obs_publisher_did"]) == list(sync_rows["obs_publisher_did"])
    truncated = tap.run_async("SELECT obs_id FROM ivoa.obscore", maxrec=2, timeout=60)
    assert len(truncated) == 2 and truncated.query_status == "OVERFLOW"


@pytest.mark.usefixtures("unread_redirects")
def test_tap_async_job_lifecycle(vo_url: str) -> None:
    import pyvo

    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    job = tap.submit_job(QUERY_CRAB, runid="escape-test")
    assert job.phase == "PENDING" and job.uws_version == "1.1"
    assert job.query == QUERY_CRAB and job.execution_duration.sec > 0
    assert job.destruction is not None and job.owner is None
    listed = requests.get(f"{vo_url}/tap/async", timeout=10).text
    assert job.job_id in listed and "http://www.ivoa.net/xml/UWS/v1.0" in listed
    job.run().wait(timeout=60)
    assert job.phase == "COMPLETED"
    assert job.result_uri == f"{job.url}/results/result"
    assert len(job.fetch_result()) == len(tap.run_sync(QUERY_CRAB))
    document = requests.get(job.url, params={"WAIT": "1"}, timeout=10).text
    assert 'xsi:nil="true"' in document and "<uws:runId>escape-test</uws:runId>" in document
    url = job.url
    job.delete()
    assert requests.get(url, timeout=10).status_code == 404

    pending = tap.submit_job(QUERY_CRAB)
    pending.abort()
    assert pending.phase == "ABORTED"
    assert requests.get(f"{pending.url}/results/result", timeout=10).status_code == 404
    url = pending.url
    gone = requests.post(url, data={"ACTION": "DELETE"}, allow_redirects=False, timeout=10)
    assert gone.status_code == 303 and gone.headers["Location"].endswith("/tap/async")
    assert requests.get(url, timeout=10).status_code == 404

    created = requests.post(
        f"{vo_url}/tap/async",
        data={"LANG": "ADQL", "QUERY": "SELECT TOP 1 obs_id FROM ivoa.obscore", "PHASE": "RUN"},
        allow_redirects=False,
        timeout=10,
    )
    assert created.status_code == 303
    started = pyvo.dal.AsyncTAPJob(created.headers["Location"])
    assert started.phase in ("QUEUED", "EXECUTING", "COMPLETED")
    assert len(started.wait(timeout=60).fetch_result()) == 1
    assert requests.delete(started.url, allow_redirects=False, timeout=10).status_code == 303


@pytest.mark.usefixtures("unread_redirects")
def test_tap_async_error_has_our_message(vo_url: str) -> None:
    import pyvo

    tap = pyvo.dal.TAPService(f"{vo_url}/tap")
    with pytest.raises(pyvo.dal.DALQueryError, match="Unknown table 'secrets'"):
        tap.run_async("SELECT * FROM secrets", timeout=60)
    job = tap.submit_job("SELEC x FRM").run().wait(timeout=60)
    assert job.phase == "ERROR"
    error = requests.get(f"{job.url}/error", timeout=10)
    assert error.ok and 'value="ERROR"' in error.text
    with pytest.raises(pyvo.dal.DALQueryError):
        job.fetch_result()
    job.delete()


@pytest.mark.usefixtures("unread_redirects")
def test_discovery_search_async_finds_the_crab(vo_url: str) -> None:
    from escape_portal.discovery import Query, Service, search

    found = search(
        [Service("lake", "tap", f"{vo_url}/tap")],
        Query(pos=CRAB, radius=1.0),
        sync=False,
        timeout=60,
    )
    (status,) = found.statuses
    assert status.state == "ok", status.message
    assert status.rows >= 6 and len(found.table) == status.rows
    assert set(found.table["target_name"]) == {"Crab"}


def _count(base: str) -> str:
    query = {"LANG": "ADQL", "QUERY": "SELECT COUNT(*) AS n FROM ivoa.obscore"}
    answer = requests.get(f"{base}/tap/sync", params=query, timeout=60)
    assert answer.ok, answer.text
    return answer.text.split("<TD>")[1].split("</TD>")[0]


def test_vo_serve_publishes_an_instance_until_ctrl_c(
    vo_url: str, lake_env: dict[str, str], tmp_path: Path
) -> None:
    """``escape-portal vo serve``: the operator's command, over a configured instance."""
    import json
    import signal

    state = tmp_path / "vo-state"
    state.mkdir()
    (state / "registry-extra.json").write_text(
        '[{"ivoid": "ivo://example.org/other/tap", "title": "Another archive", '
        '"capabilities": [{"standard_id": "ivo://ivoa.net/std/TAP", '
        '"access_url": "https://other.example.org/tap"}]}]'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "escape_portal.cli", "vo", "serve", "--instance", "embedded",
         "--state-dir", str(state), "--json"],
        env=lake_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        base = started["url"]
        assert base.startswith("http://127.0.0.1:") and started["instance"] == "embedded"
        assert started["tap"] == f"{base}/tap" and started["state_dir"] == str(state)
        assert requests.get(f"{base}/tap/availability", timeout=10).ok
        assert _count(base) == _count(vo_url)  # the same lake, the same records
        caps = requests.get(f"{base}/tap/capabilities", timeout=10).text
        assert f'<accessURL use="base">{base}/tap</accessURL>' in caps
        query = {"LANG": "ADQL", "QUERY": "SELECT ivoid FROM rr.resource"}
        ivoids = requests.get(f"{base}/tap/sync", params=query, timeout=30).text
        assert "ivo://example.org/other/tap" in ivoids  # from its own state folder
        process.send_signal(signal.SIGINT)  # Ctrl-C
        assert process.wait(timeout=20) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_vo_serve_of_an_unknown_instance_says_which_exist(lake_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "escape_portal.cli", "vo", "serve", "--instance", "nope"],
        env=lake_env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == "error: No Rucio instance named 'nope'."
    assert "embedded" in done.stderr
