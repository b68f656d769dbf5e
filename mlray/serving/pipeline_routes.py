"""Pipelines over HTTP: start a run by hand and watch it (issue 14, manual triggers).

``POST /v1/pipelines/{name}/runs`` starts a run of a pipeline of the ingress's project
(202 with the run; an active run absorbs the start: ``coalesced``) and
``GET /v1/pipelines/runs/{run_id}`` answers the run with its stages' states.

The ingress does not act for the caller: :class:`PipelineCalls` calls the ``pipelines``
actor of the ingress's namespace with the request's own credential (the bearer key, or
None under ``auth: none``), so the actor authenticates and authorises the HTTP caller
itself, as it does any client. The replica's event loop never blocks on the actor
(the call's ObjectRef is awaited).

The routes are an :class:`~fastapi.APIRouter` the ingress app includes; each finds the
replica's :class:`PipelineCalls` (its ``pipelines`` attribute) through a dependency.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mlray._private.transport import task_error
from mlray.errors import BackendUnavailable
from mlray.serving.access import bearer
from mlray.serving.api_models import ErrorBody

__all__ = ["RUN_ID_PATTERN", "PipelineCalls", "PipelineRunRequest", "actor_invoke",
           "pipeline_router", "replica_pipelines", "run_body"]

#: Run ids as the platform makes them (12 hex digits), with room for other short ids.
RUN_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
#: The ``trigger`` of a run started over HTTP.
HTTP_TRIGGER = "http"

#: Sends one call to the pipelines actor: (method, credential, *args, **kwargs) -> answer.
Invoke = Callable[..., Awaitable[Any]]
#: Reads a request's body within the ingress's limits (size, rate, quota).
ReadBody = Callable[[Request], Awaitable[bytes]]


class PipelineRunRequest(BaseModel):
    """``POST /v1/pipelines/{name}/runs``: the run's parameters (optional body)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Run parameters by name (checked against the pipeline's declared "
                    "parameters; defaults fill the others).")


def run_body(raw: bytes) -> PipelineRunRequest:
    """The request of a raw body: an empty body asks for the defaults.

    Raises:
        pydantic.ValidationError: not JSON, or not the request's shape (the ingress
            answers 400 naming the field).
    """
    if not raw.strip():
        return PipelineRunRequest()
    return PipelineRunRequest.model_validate_json(raw)


def actor_invoke(namespace: str, timeout_s: float) -> Invoke:
    """An :data:`Invoke` on the ``pipelines`` actor of ``namespace`` (looked up on first
    use); Ray's errors become mlray errors (the actor's own are raised as they are)."""
    handles: list[Any] = []

    async def invoke(method: str, credential: str | None, *args: Any, **kwargs: Any) -> Any:
        import ray
        from ray import exceptions as rex

        try:
            if not handles:
                handles.append(ray.get_actor("pipelines", namespace=namespace))
            ref = handles[0].invoke.remote(method, credential, *args, **kwargs)
            return await asyncio.wait_for(ref, timeout_s)
        except rex.RayTaskError as exc:
            raise task_error("pipelines", method, exc, detail=False) from None
        except (ValueError, rex.RayActorError, rex.ActorUnavailableError) as exc:
            raise BackendUnavailable(f"the pipelines actor is unavailable for {method}: "
                                     f"{type(exc).__name__}") from None
        except TimeoutError:
            raise BackendUnavailable(f"the pipelines actor did not answer {method} within "
                                     f"{timeout_s:g} s") from None

    return invoke


class PipelineCalls:
    """The ``pipelines`` actor's calls of one ingress replica, made as the HTTP caller.

    Args:
        project: the ingress's project (every call is about it).
        forward_credential: True under ``auth: keys`` (the request's bearer credential is
            the call's); False under ``auth: none`` (the call presents None).
        invoke: sends a call to the actor (:func:`actor_invoke`).
        read: reads a request's body within the ingress's limits.
    """

    def __init__(self, project: str, *, forward_credential: bool, invoke: Invoke,
                 read: ReadBody) -> None:
        self.project = project
        self.forward_credential = forward_credential
        self._invoke = invoke
        self.read = read

    def credential(self, request: Request) -> str | None:
        """What the actor call presents: the request's bearer credential, or None."""
        if not self.forward_credential:
            return None
        return bearer(request.headers.get("authorization"))

    async def start(self, request: Request, name: str, params: dict[str, Any]
                    ) -> dict[str, Any]:
        """Start ``name`` with ``params`` as the caller; the run (``coalesced`` when an
        active run absorbed the start)."""
        started = await self._invoke("run", self.credential(request), self.project, name,
                                     params, via=HTTP_TRIGGER)
        return {**_run(started.run), "coalesced": started.coalesced}

    async def run(self, request: Request, run_id: str) -> dict[str, Any]:
        """One run of the project with its stages, as the caller may see it."""
        return _run(await self._invoke("get_run", self.credential(request), self.project,
                                       run_id))


def _run(run: Any) -> dict[str, Any]:
    """A run as answered over HTTP (the requester's role table stays inside)."""
    return run.model_dump(mode="json", exclude={"roles"})  # type: ignore[no-any-return]


def replica_pipelines() -> PipelineCalls:
    """The :class:`PipelineCalls` of the Serve replica this runs in."""
    from ray import serve

    return serve.get_replica_context().servable_object.pipelines  # type: ignore[no-any-return]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json",
                    headers=headers)


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 429, 503)}
_RUN_ID = Path(description="A run id, as POST /v1/pipelines/{name}/runs answered it",
               pattern=RUN_ID_PATTERN)
_OPTIONAL_BODY = {"requestBody": {"required": False, "content": {"application/json": {
    "schema": PipelineRunRequest.model_json_schema()}}}}
Calls = Annotated[PipelineCalls, Depends(replica_pipelines)]

pipeline_router = APIRouter()


@pipeline_router.post(
    "/v1/pipelines/{name}/runs", status_code=202, openapi_extra=_OPTIONAL_BODY,
    responses={202: {"description": "The run (or the active run it was folded into)"},
               **_ERRORS},
    summary="Start a run of a pipeline (its active run absorbs it: coalesced)")
async def start_pipeline_run(name: str, request: Request, calls: Calls) -> Response:
    body = run_body(await calls.read(request))
    run = await calls.start(request, name, body.params)
    location = f"{request.scope.get('root_path', '')}/v1/pipelines/runs/{run['run_id']}"
    return _json(run, 202, {"Location": location})


@pipeline_router.get("/v1/pipelines/runs/{run_id}", responses=_ERRORS,
                     summary="A pipeline run with its stages' states")
async def get_pipeline_run(request: Request, calls: Calls,
                           run_id: str = _RUN_ID) -> Response:
    return _json(await calls.run(request, run_id))
