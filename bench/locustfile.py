"""Researchers browsing the lake through the server extension's REST API (locust).

Each simulated researcher opens the Data Lake panel as the JupyterLab front end does:
the scopes, a scope's datasets, a dataset's first page of files, its replica status and
its details, then a search with a metadata filter, with a short think time between
clicks. Run by ``bench/load_server.py`` (which starts the lake and the server and reads
the statistics), not by hand; it needs ``locust`` (``.cache/load-venv``).

Environment: ``ESCAPE_LOAD_TOKEN`` (the Jupyter server's token).
"""

from __future__ import annotations

import os
import random

from locust import HttpUser, between, task

API = "/escape-portal/api"
DATASETS = ("cta/crab-2024.dl3", "cta/crab-2024.sky", "scale/files-100", "scale/files-10k")


class Researcher(HttpUser):  # type: ignore[misc]
    """One researcher clicking through the Data Lake panel."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"token {os.environ['ESCAPE_LOAD_TOKEN']}"

    @task(2)
    def scopes(self) -> None:
        self.client.get(f"{API}/scopes", name="scopes")

    @task(3)
    def datasets_of_a_scope(self) -> None:
        scope = random.choice(("cta", "scale", "km3net"))
        self.client.get(f"{API}/dids", params={"scope": scope, "type": "collection"}, name="dids")

    @task(4)
    def first_page(self) -> None:
        did = random.choice(DATASETS)
        self.client.get(f"{API}/dids/{did}/contents", params={"limit": 100}, name="contents")

    @task(3)
    def replica_status(self) -> None:
        did = random.choice(DATASETS)
        self.client.get(f"{API}/dids/{did}/replicas", name="replicas")

    @task(2)
    def details(self) -> None:
        did = random.choice(DATASETS)
        self.client.get(f"{API}/dids/{did}", name="info")

    @task(1)
    def search(self) -> None:
        self.client.get(
            f"{API}/dids",
            params={"scope": "cta", "type": "dataset", "filter": "target=Crab"},
            name="search",
        )
