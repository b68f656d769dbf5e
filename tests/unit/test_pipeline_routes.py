"""The pipeline routes of the ingress without Ray: their rows in the role table, and the
routes behind the access middleware and the ingress's error handlers, calling a real
:class:`PipelineService` (stages in threads, keys in SQLite) as the HTTP caller."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from mlray.auth import KeyBook
from mlray.auth import keys as keymod
from mlray.auth.authenticator import Authenticator
from mlray.auth.tokens import platform_secret
from mlray.identity import Caller, Role
from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.service import PipelineService
from mlray.serving.access import ENDPOINT_ROLES, Access, AccessMiddleware, endpoint_of
from mlray.serving.pipeline_routes import (
    PipelineCalls,
    pipeline_router,
    replica_pipelines,
    run_body,
)
from mlray.storage import ArtifactStore, open_state_store
from tests.conftest import wait_for

ROOT = Caller.local_admin("root")
FAST = keymod.ScryptParams(n=2**10)
S = "tests.pipeline_stages:"


def test_the_role_table_has_the_pipeline_routes() -> None:
    assert ENDPOINT_ROLES["POST /v1/pipelines/{name}/runs"] is Role.editor
    assert ENDPOINT_ROLES["GET /v1/pipelines/runs/{run_id}"] is Role.viewer
    assert endpoint_of("POST", "/v1/pipelines/nightly/runs") == (
        "POST /v1/pipelines/{name}/runs", Role.editor)
    assert endpoint_of("GET", "/v1/pipelines/runs/0a1b2c3d4e5f") == (
        "GET /v1/pipelines/runs/{run_id}", Role.viewer)


def test_an_empty_body_asks_for_the_defaults() -> None:
    from pydantic import ValidationError

    assert run_body(b"").params == {} and run_body(b" \n").params == {}
    assert run_body(b'{"params": {"a": 1}}').params == {"a": 1}
    with pytest.raises(ValidationError):
        run_body(b'{"params": {}, "other": 1}')


class Rig:
    """The routes in a small app over a real pipelines service and real keys."""

    def __init__(self, tmp: Path, *, forward: bool = True) -> None:
        from mlray.serving.ingress import api  # the routes registered

        self.store = open_state_store(f"sqlite:///{tmp / 's.db'}")
        self.book = KeyBook(self.store, params=FAST)
        self.executor = ThreadExecutor()
        self.service = PipelineService(self.store, ArtifactStore(str(tmp / "a")),
                                       self.executor)
        self.service.allow_code(ROOT, "fraud", allow=[S.rstrip(":")])
        self.auth = Authenticator(platform_secret(self.store), self.book.resolve,
                                  self.book.record, anonymous=ROOT if not forward else None,
                                  ttl_s=5.0)
        self.seen: list[str | None] = []
        self.calls = PipelineCalls("fraud", forward_credential=forward, invoke=self._invoke,
                                   read=self._read)
        app = FastAPI()
        app.include_router(pipeline_router)
        app.exception_handlers.update(api.exception_handlers)  # the ingress's error bodies
        app.dependency_overrides[replica_pipelines] = lambda: self.calls
        access = Access("fraud", self.auth if forward else None, anonymous=ROOT)
        app.add_middleware(AccessMiddleware, locate=lambda: access)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                      base_url="http://ingress")

    async def _read(self, request: Request) -> bytes:
        return await request.body()

    async def _invoke(self, method: str, credential: str | None, *args: Any,
                      **kwargs: Any) -> Any:
        """What the actor does with a call: authenticate the credential, then call."""
        self.seen.append(credential)
        caller = await asyncio.to_thread(self.auth.caller, credential)
        return await asyncio.to_thread(getattr(self.service, method), caller, *args, **kwargs)

    def key(self, role: str) -> dict[str, str]:
        issued = self.book.create_key(ROOT, "fraud", f"u-{role}", {"fraud": role})
        return {"Authorization": f"Bearer {issued.key.get_secret_value()}"}

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return asyncio.run(self.http.request(method, path, **kw))

    def apply(self) -> str:
        self.service.apply(ROOT, "fraud", [PipelineSpec.model_validate({
            "name": "nightly", "parameters": {"value": {"type": "int", "default": 3}},
            "stages": [{"name": "emit", "kind": S + "emit", "params": {"value": "$value"}}]})])
        return "nightly"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    found = Rig(tmp_path)
    yield found
    found.executor.shutdown()
    found.store.close()


def test_a_run_is_started_and_shown_as_the_http_caller(rig: Rig) -> None:
    name = rig.apply()
    editor, viewer = rig.key("editor"), rig.key("viewer")
    started = rig.call("POST", f"/v1/pipelines/{name}/runs", json={"params": {"value": 5}},
                       headers=editor)
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["created_by"], run["trigger"], run["params"]) == ("u-editor", "http",
                                                                  {"value": 5})
    assert rig.seen == [editor["Authorization"].split(" ", 1)[1]]  # the caller's own key
    assert started.headers["location"] == f"/v1/pipelines/runs/{run['run_id']}"

    def done() -> bool:
        rig.service.tick()
        got = rig.call("GET", f"/v1/pipelines/runs/{run['run_id']}", headers=viewer)
        assert got.status_code == 200, got.text
        return bool(got.json()["state"] == "SUCCEEDED")
    wait_for(done, timeout=30)
    shown = rig.call("GET", f"/v1/pipelines/runs/{run['run_id']}", headers=viewer).json()
    assert shown["stages"]["emit"]["state"] == "SUCCEEDED" and "roles" not in shown

    # The middleware refuses a viewer's start before the actor hears of it.
    calls = len(rig.seen)
    refused = rig.call("POST", f"/v1/pipelines/{name}/runs", headers=viewer)
    assert refused.status_code == 403 and len(rig.seen) == calls


def test_unknown_pipelines_and_bad_params_answer_the_usual_errors(rig: Rig) -> None:
    name = rig.apply()
    editor = rig.key("editor")
    missing = rig.call("POST", "/v1/pipelines/other/runs", headers=editor)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    gone = rig.call("GET", "/v1/pipelines/runs/000000000000", headers=editor)
    assert gone.status_code == 404
    for body, field in [({"params": {"value": "x"}}, "params.value"),
                        ({"params": {"nope": 1}}, "params"),
                        ({"params": {}, "extra": 1}, "extra")]:
        bad = rig.call("POST", f"/v1/pipelines/{name}/runs", json=body, headers=editor)
        assert (bad.status_code, bad.json()["field"]) == (400, field), bad.text
    assert rig.service.runs(ROOT, "fraud") == []


def test_without_keys_the_call_presents_no_credential(tmp_path: Path) -> None:
    rig = Rig(tmp_path, forward=False)
    try:
        name = rig.apply()
        started = rig.call("POST", f"/v1/pipelines/{name}/runs",
                           headers={"Authorization": "Bearer whatever"})
        assert started.status_code == 202, started.text
        assert rig.seen == [None] and started.json()["created_by"] == "root"
    finally:
        rig.executor.shutdown()
        rig.store.close()
