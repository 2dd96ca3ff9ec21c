"""Fuzz the REST API against its OpenAPI description, on a real Jupyter server and lake.

Schemathesis generates requests from ``escape_portal/server/openapi.yaml`` for every
operation and sends them to a ``jupyter server`` (this venv's, the extension enabled)
that the test starts on a free 127.0.0.1 port with a token, pointed at the embedded lake,
and stops by its pid. Each answer must be no 5xx, have a documented status and content
type, and match its response schema.

Bounded: ``EXAMPLES`` generated requests per operation (about 300 in all), derandomized
(the same requests every run), within ``BUDGET_SECONDS``. Only schema-conforming requests
are generated (what the JupyterLab extension might send), not the examples of the
description: generated DIDs are random names the lake does not hold, so make-available
and download answer 404 and create no rule nor download. Every URL the server would
fetch (a search's ``services``, DataLink's ``url``) is restricted to loopback: the
server must never be sent off this machine by a test.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

import escape_portal.server
from escape_portal.config import LakeConfig
from escape_portal.embedded.supervisor import EmbeddedLake
from escape_portal.server.routes import ROUTES, methods

pytestmark = pytest.mark.lake

SPEC_PATH = Path(escape_portal.server.__file__).parent / "openapi.yaml"
#: Schema-conforming requests generated per operation (every operation of ROUTES).
EXAMPLES = 12
#: Schema-violating requests per operation (those that send the server no URL to fetch).
NEGATIVE_EXAMPLES = 5
#: Operations whose requests carry a URL the server fetches: never fuzzed with garbage.
FETCHING = {"GET /vo/datalinks", "POST /vo/search"}
#: DIDs of the embedded lake's sample data, so that real listings are checked too.
SCOPES = ["cta", "lofar", "scale"]
NAMES = ["crab-2024", "crab-2024.dl3", "crab-2024.dl3.0001.fits", "lotss-dr2", "files-100"]
#: The whole fuzz, server start excluded.
BUDGET_SECONDS = 90.0
#: Nothing listens on the discard port: a VO service "there" fails at once.
UNREACHABLE = "http://127.0.0.1:9"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture()
def live_server(
    embedded_lake: EmbeddedLake, lake_config: LakeConfig, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """``(base URL of the API, token)`` of a Jupyter server with the extension."""
    port, token = _free_port(), secrets.token_hex(16)
    config = {
        "ServerApp": {
            "ip": "127.0.0.1",
            "port": port,
            "port_retries": 0,
            "open_browser": False,
            "allow_root": True,  # CI runs as root
            "root_dir": str(tmp_path),
            "jpserver_extensions": {"escape_portal": True},
        },
        "IdentityProvider": {"token": token},
        "EscapePortal": {
            "instance_name": "embedded",
            "cache_dir": str(tmp_path / "download-cache"),
            "max_workers": 4,
            "vo_timeout": 3.0,
        },
    }
    config_dir = tmp_path / "jupyter-config"
    config_dir.mkdir()
    # The token is in the server's own config file only (mode 0600, in the test's tmp dir).
    config_file = config_dir / "jupyter_server_config.json"
    config_file.write_text(json.dumps(config))
    config_file.chmod(0o600)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RUCIO_", "ESCAPE_PORTAL_", "ESCAPE_COMPUTE", "ESCAPE_MOUNT"))
    }
    env.update(
        ESCAPE_PORTAL_LAKE_DIR=str(embedded_lake.paths.root),
        ESCAPE_PORTAL_CONFIG=str(tmp_path / "no-instances.toml"),
        JUPYTER_CONFIG_DIR=str(config_dir),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        RUCIO_PASSWORD=lake_config.password or "",
    )
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}/escape-portal/api"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            with contextlib.suppress(requests.ConnectionError):
                answer = requests.get(
                    f"{base}/instances", headers={"Authorization": f"token {token}"}, timeout=5
                )
                if answer.status_code == 200:
                    break
            assert time.monotonic() < deadline, "The Jupyter server did not answer in 60 s."
            time.sleep(0.5)
        yield base, token
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(10)
        log.close()


def fuzz_description(vo_url: str | None) -> dict[str, Any]:
    """The API's description, with every URL the server would fetch kept on loopback.

    Only the requests are restricted: the answers are checked against the description as
    it is. A search may name a service where nothing listens (the search answers 200 with
    that service's error); DataLink is asked the lake's own endpoint only, since a 503 is
    the right answer for one that cannot be reached.
    """
    spec: dict[str, Any] = copy.deepcopy(yaml.safe_load(SPEC_PATH.read_text()))
    schemas = spec["components"]["schemas"]
    vo = vo_url.rstrip("/") if vo_url else UNREACHABLE
    service = copy.deepcopy(schemas["Service"])
    service["properties"]["url"] = {"enum": [f"{UNREACHABLE}/tap", f"{vo}/tap"]}
    schemas["SearchRequest"]["properties"]["services"]["items"] = service
    links = [f"{vo}/datalink/links?ID=ivo%3A%2F%2Fnot.there%3Fx", f"{vo}/datalink/links"]
    # Half the DIDs are the sample data's (a container, datasets, a file), half random.
    parameters = spec["components"]["parameters"]
    parameters["scope"]["schema"] = {"anyOf": [{"enum": SCOPES}, {"type": "string"}]}
    parameters["name"]["schema"] = {"anyOf": [{"enum": NAMES}, {"type": "string"}]}
    for parameter in spec["paths"]["/vo/datalinks"]["get"]["parameters"]:
        if parameter["name"] == "url":
            parameter["schema"] = {"type": "string", "enum": links}
    return spec


def test_the_api_answers_no_5xx_and_as_described(
    live_server: tuple[str, str], lake_config: LakeConfig
) -> None:
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # What the API promises. Not positive_data_acceptance: the description leaves names
    # and scopes as any string, and the lake rightly answers 400 to most of them.
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]

    base, token = live_server
    schema = schemathesis.openapi.from_dict(fuzz_description(lake_config.vo_url))
    session = requests.Session()
    headers = {"Authorization": f"token {token}"}
    failures: dict[str, list[str]] = {}
    sent: dict[str, int] = {}
    started = time.monotonic()

    runs = [(result.ok(), GenerationMode.POSITIVE) for result in schema.get_all_operations()]
    runs += [(op, GenerationMode.NEGATIVE) for op, _ in runs if op.label not in FETCHING]
    for operation, mode in runs:
        label = operation.label
        sent.setdefault(label, 0)

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES if mode == GenerationMode.POSITIVE else NEGATIVE_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            # fuzz() runs within this iteration: label is this operation's.
            sent[label] += 1  # noqa: B023
            try:
                response = case.call(base_url=base, session=session, headers=headers, timeout=30)
                case.validate_response(response, checks=checks)
            except (FailureGroup, AssertionError) as failure:
                # Every distinct kind of failure, not only the first; generation goes on.
                kinds = [getattr(f, "title", str(f)) for f in getattr(failure, "exceptions", [])]
                kind = ", ".join(kinds) or type(failure).__name__
                key = f"{label} ({mode.value}): {kind}"  # noqa: B023
                if key not in failures:
                    request = f"{case.method} {case.formatted_path} {case.query or ''}"
                    failures[key] = [f"{key}\n  {request} {case.body!r:.200}\n{failure}"[:1500]]

        fuzz()
        assert time.monotonic() - started < BUDGET_SECONDS, (
            f"The fuzz took over {BUDGET_SECONDS:.0f} s (at {label}): {sent}"
        )

    total = sum(sent.values())
    print(f"fuzzed {total} requests in {time.monotonic() - started:.1f} s: {sent}")
    operations = sum(len(methods(handler)) for _, handler in ROUTES)
    assert len(sent) == operations and total >= 200, sent  # every operation was fuzzed
    assert not failures, "\n\n".join(f for found in failures.values() for f in found)
