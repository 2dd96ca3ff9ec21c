"""The UWS job list of the VO publication, without a lake: bounds and phases."""

from __future__ import annotations

import threading
import time

import pytest

from escape_portal.vo_publish import uws


def _manager(runner: uws.Runner, **kwargs: int) -> uws.JobManager:
    return uws.JobManager(runner, user_errors=(ValueError,), max_duration=5, **kwargs)


def test_jobs_are_bounded_and_finished_ones_go_first() -> None:
    jobs = _manager(lambda params, seconds: "<VOTABLE/>", max_jobs=3)
    first = jobs.create({"QUERY": ["q1"]})
    for n in range(2, 5):
        jobs.create({"QUERY": [f"q{n}"]})
    assert len(jobs.jobs()) == 3
    with pytest.raises(uws.UWSError) as missing:
        jobs.get(first.job_id)
    assert missing.value.status == 404
    jobs.close()


def test_run_wait_abort_and_errors() -> None:
    release = threading.Event()

    def runner(params: dict[str, list[str]], seconds: float) -> str:
        if params["QUERY"] == ["bad"]:
            raise ValueError("Unknown table 'secrets'")
        release.wait(seconds)
        return "<VOTABLE/>"

    jobs = _manager(runner, workers=1)
    try:
        ok = jobs.create({"QUERY": ["good"], "PHASE": ["RUN"]})
        started = time.monotonic()
        waited = jobs.get(ok.job_id, wait=0.3)
        assert waited.phase == "EXECUTING" and time.monotonic() - started < 2
        jobs.set_phase(ok.job_id, "ABORT")
        release.set()
        time.sleep(0.2)
        assert jobs.get(ok.job_id).phase == "ABORTED"  # the late result is dropped
        bad = jobs.create({"QUERY": ["bad"], "RUNID": ["mine"]})
        jobs.set_phase(bad.job_id, "RUN")
        done = jobs.get(bad.job_id, wait=5)
        while done.phase in uws.ACTIVE:
            done = jobs.get(bad.job_id, wait=5)
        assert done.phase == "ERROR" and done.error == "Unknown table 'secrets'"
        document = uws.job_document(done, "http://x/tap/async/" + done.job_id)
        assert "<uws:runId>mine</uws:runId>" in document and "errorSummary" in document
        reply = jobs.handle("GET", f"{bad.job_id}/results/result", {}, "http://x/tap/async")
        assert reply.status == 404
        reply = jobs.handle("POST", bad.job_id, {"ACTION": ["DELETE"]}, "http://x/tap/async")
        assert reply.status == 303 and reply.location == "http://x/tap/async"
    finally:
        release.set()
        jobs.close()
