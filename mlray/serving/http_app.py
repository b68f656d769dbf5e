"""The ingress's FastAPI app: access checks first, errors as JSON with their status, and
the OpenAPI document (hand-read bodies declared, no 422s, the Bearer scheme and roles).

The routes live on :class:`~mlray.serving.ingress.Ingress` (and the pipeline router);
this module holds what every route shares.
"""

# No `from __future__ import annotations`: FastAPI reads signatures at runtime.
import functools
import json
import logging
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from mlray.errors import InvalidInput, MlrayError
from mlray.serving.access import AccessMiddleware, document_access
from mlray.serving.api_models import ErrorBody
from mlray.serving.pipeline_routes import pipeline_router
from mlray.serving.protocol import VERSION_PATTERN, parse_version

__all__ = ["ERRORS", "VERSION_PATH", "api", "int_header", "json_response", "request_body"]

log = logging.getLogger("mlray.ingress")

api = FastAPI(title="mlray", version="1",
              description="Predictions over the Open Inference Protocol (V2) and JSON.")
api.add_middleware(AccessMiddleware)  # 401/403 before any route (mlray.serving.access)
api.include_router(pipeline_router)  # /v1/pipelines/...: as the caller (pipeline_routes)

#: The error answers every route may give (their body is :class:`ErrorBody`).
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 413, 429, 500, 503, 504)}
#: A version in a path, checked by parse_version (its 400 names the field); the pattern
#: documents it.
VERSION_PATH = Path(description="A positive integer: 1 or 12 (never 01, +1 or 1.0)",
                    json_schema_extra={"pattern": VERSION_PATTERN})
_BODIES: dict[str, type[BaseModel]] = {}


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a JSON body read by hand (pydantic parses the raw bytes: faster)."""
    _BODIES[model.__name__] = model
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _openapi(app: FastAPI, bodies: dict[str, type[BaseModel]]) -> dict[str, Any]:
    if app.openapi_schema is None:
        spec = get_openapi(title=app.title, version=app.version, description=app.description,
                           routes=app.routes)
        for operations in spec.get("paths", {}).values():  # bad input is a 400, never a 422
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        for name, model in bodies.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[name] = schema
        document_access(spec)  # the Bearer scheme and each operation's least role
        app.openapi_schema = spec
    return app.openapi_schema


# Bound to this app and its bodies, not looked up as module globals: Serve ships the app
# to each replica by value, with the routes the Ingress class added to it.
api.openapi = functools.partial(_openapi, api, _BODIES)  # type: ignore[method-assign]


def json_response(payload: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """``payload`` as JSON (numpy arrays included)."""
    try:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate echoed from the request
        body = json.dumps(payload, default=_plain).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else str(value)


def _error(exc: MlrayError, headers: dict[str, str] | None = None) -> Response:
    return json_response(exc.to_dict(), exc.http_status, headers)


@api.exception_handler(MlrayError)
async def _mlray_error(request: Request, exc: MlrayError) -> Response:
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, int(np.ceil(retry_after))))
    return _error(exc, headers)


@api.exception_handler(ValidationError)
async def _pydantic_error(request: Request, exc: ValidationError) -> Response:
    return _error(_invalid(exc.errors()))


@api.exception_handler(RequestValidationError)
async def _request_error(request: Request, exc: RequestValidationError) -> Response:
    return _error(_invalid(list(exc.errors())))


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    # Starlette puts Allow on its 405s (RFC 9110 requires it); keep the exception's headers.
    return json_response({"error": str(exc.detail), "code": code}, exc.status_code,
                         dict(exc.headers or {}))


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    return json_response({"error": f"internal error: {type(exc).__name__}",
                          "code": "internal"}, 500)


def _invalid(errors: list[Any]) -> InvalidInput:
    err = errors[0]
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ".".join(loc) or "body"
    return InvalidInput(f"{field}: {err.get('msg', 'invalid')}", field=field)


def int_header(request: Request, name: str) -> int | None:
    """A version number from header ``name``, or None without one (400 naming it if bad)."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        return parse_version(raw)
    except InvalidInput:
        raise InvalidInput(f"header {name} must be a version number like 2, got {raw[:40]!r}",
                           field=name) from None
