"""Pipeline runs started and watched over HTTP (issue 14, part 4: manual triggers) on the
session platform's ingress (``auth: none``), and on a second ingress app with
``auth: keys`` over the same actors, where the run is the key holder's: the ingress
forwards the caller's key and the ``pipelines`` actor authenticates it itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlray.auth import KeyBook
from mlray.identity import Caller
from mlray.pipelines.definitions import PipelineSpec
from tests.conftest import wait_for
from tests.integration.platform import Platform

pytestmark = pytest.mark.slow
S = "tests.pipeline_stages:"
PREFIX = "/pipes-secure"


def _apply(platform: Platform, log: Path) -> str:
    """A fresh one-stage pipeline with an int parameter ``value`` (default 3)."""
    name = f"p{uuid.uuid4().hex[:8]}"
    pipelines = platform.client.pipelines
    pipelines.allow_code(allow=[S.rstrip(":")])  # an admin lets the test's stage code run
    pipelines.apply([PipelineSpec.model_validate({
        "name": name, "parameters": {"value": {"type": "int", "default": 3}},
        "stages": [{"name": "emit", "kind": S + "emit", "num_cpus": 0.1,
                    "params": {"value": "$value", "log": str(log)}}]})])
    return name


def _finished(http: httpx.Client, run_id: str, headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """The run once it stopped moving (polled over HTTP)."""
    seen: dict[str, Any] = {}

    def done() -> bool:
        got = http.get(f"/v1/pipelines/runs/{run_id}", headers=headers or {})
        assert got.status_code == 200, got.text
        seen.update(got.json())
        return seen["state"] not in ("PENDING", "RUNNING")
    wait_for(done, timeout=180, interval=0.3)
    return seen


def test_a_run_started_over_http_succeeds_and_shows_its_stages(platform: Platform,
                                                               tmp_path: Path) -> None:
    log = tmp_path / "log"
    name = _apply(platform, log)
    http = platform.http
    started = http.post(f"/v1/pipelines/{name}/runs", json={"params": {"value": 5}})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["pipeline"] == name and run["trigger"] == "http"
    assert run["params"] == {"value": 5} and run["coalesced"] is False
    assert run["state"] in ("PENDING", "RUNNING")
    assert started.headers["location"] == f"/v1/pipelines/runs/{run['run_id']}"
    assert "roles" not in run  # the requester's role table stays inside
    done = _finished(http, run["run_id"])
    assert done["state"] == "SUCCEEDED", done["message"]
    assert done["stages"]["emit"]["state"] == "SUCCEEDED"
    assert done["created_by"] == platform.config.user  # auth: none: the local admin
    assert log.read_text().split() == ["emit"]
    # the client sees the same run, started by an HTTP trigger
    assert platform.client.pipelines.show(run["run_id"]).trigger == "http"

    # No body at all: the parameters' defaults (a new run: the other one has finished).
    again = http.post(f"/v1/pipelines/{name}/runs")
    assert again.status_code == 202, again.text
    assert again.json()["params"] == {"value": 3}
    assert _finished(http, again.json()["run_id"])["state"] == "SUCCEEDED"


def test_unknown_pipelines_runs_and_bad_params_are_refused(platform: Platform,
                                                           tmp_path: Path) -> None:
    name = _apply(platform, tmp_path / "log")
    http = platform.http
    missing = http.post("/v1/pipelines/no-such-pipeline/runs", json={})
    assert missing.status_code == 404, missing.text
    assert missing.json()["code"] == "not_found" and missing.json()["field"] == "pipeline"
    assert http.get("/v1/pipelines/runs/000000000000").status_code == 404

    wrong_type = http.post(f"/v1/pipelines/{name}/runs", json={"params": {"value": "x"}})
    assert wrong_type.status_code == 400, wrong_type.text
    assert wrong_type.json()["field"] == "params.value"
    unknown = http.post(f"/v1/pipelines/{name}/runs", json={"params": {"nope": 1}})
    assert (unknown.status_code, unknown.json()["field"]) == (400, "params")
    extra = http.post(f"/v1/pipelines/{name}/runs", json={"params": {}, "priority": 1})
    assert (extra.status_code, extra.json()["field"]) == (400, "priority")
    not_json = http.post(f"/v1/pipelines/{name}/runs", content=b"{",
                         headers={"content-type": "application/json"})
    assert not_json.status_code == 400, not_json.text
    bad_name = http.post("/v1/pipelines/bad--name/runs", json={})
    assert (bad_name.status_code, bad_name.json()["field"]) == (400, "name")
    bad_id = http.get("/v1/pipelines/runs/x%20y")
    assert (bad_id.status_code, bad_id.json()["field"]) == (400, "path.run_id")
    assert platform.client.pipelines.runs(name) == []  # none of these started a run


@pytest.fixture
def secure(platform: Platform) -> Iterator[tuple[str, KeyBook]]:
    """A second ingress app with ``auth: keys`` over the platform's actors."""
    from ray import serve

    from mlray.serving.ingress import ingress_app
    from mlray.serving.settings import load_serving_config
    from mlray.storage import open_state_store

    config = platform.config.model_copy(update={"auth": "keys"})
    serve.run(ingress_app(config, load_serving_config(config.serving_config)),
              name="mlray-pipes-secure", route_prefix=PREFIX)
    store = open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix)
    yield f"{platform.url}{PREFIX}", KeyBook(store)
    store.close()
    if serve.status().applications:
        serve.delete("mlray-pipes-secure")


def test_the_run_is_the_http_callers_own(platform: Platform, tmp_path: Path,
                                          secure: tuple[str, KeyBook]) -> None:
    url, book = secure
    project = platform.project
    name = _apply(platform, tmp_path / "log")
    root = Caller.local_admin("test-root")
    users = {role: f"{role}-{uuid.uuid4().hex[:6]}" for role in ("viewer", "editor")}
    headers = {role: {"Authorization": "Bearer " + book.create_key(
        root, project, user, {project: role}).key.get_secret_value()}
        for role, user in users.items()}
    with httpx.Client(base_url=url, timeout=30) as http:
        wait_for(lambda: http.get("/v2/health/ready").status_code == 200, timeout=120,
                 interval=0.3)
        assert http.post(f"/v1/pipelines/{name}/runs", json={}).status_code == 401
        refused = http.post(f"/v1/pipelines/{name}/runs", json={}, headers=headers["viewer"])
        assert refused.status_code == 403, refused.text
        started = http.post(f"/v1/pipelines/{name}/runs", json={}, headers=headers["editor"])
        assert started.status_code == 202, started.text
        run = started.json()
        # the actor saw the key's holder, not the ingress or the local admin
        assert run["created_by"] == users["editor"]
        assert started.headers["location"] == f"{PREFIX}/v1/pipelines/runs/{run['run_id']}"
        done = _finished(http, run["run_id"], headers["viewer"])
        assert done["state"] == "SUCCEEDED", done["message"]
        assert http.get(f"/v1/pipelines/runs/{run['run_id']}").status_code == 401
