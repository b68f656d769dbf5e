"""The ``mlray`` ingress app: HTTP in, traffic policy and breakers, model apps out.

Each replica keeps its own copy of the served models and breaker states (see
:mod:`mlray.serving.router`), kept in step with the control plane by its
:class:`~mlray.serving.ingress_sync.IngressSync` (a background task started with the
replica). No request waits on an actor, except one shared, rate-limited ``usable_apps``
call when a request misses a version deployed since the last refresh.
"""

# No `from __future__ import annotations`: FastAPI reads the route signatures at runtime.
import asyncio
import gc
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from fastapi import Request, Response
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from mlray._private.redact import install_log_redaction
from mlray.config import PlatformConfig
from mlray.errors import (
    InvalidInput,
    MlrayError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
)
from mlray.features.offline import OfflineStore
from mlray.features.online import OnlineStore, open_online_store
from mlray.features.serving import FeatureReader
from mlray.monitoring.prediction_log import FeedbackLog
from mlray.registry.types import ModelVersion
from mlray.serving.access import open_access, rate_bucket
from mlray.serving.api_models import (
    BatchPredictRequest,
    FeaturesRequest,
    FeedbackRequest,
    PredictRequest,
    PredictResponse,
    PushRequest,
)
from mlray.serving.enrich import fill_from_features
from mlray.serving.http_app import (
    ERRORS,
    VERSION_PATH,
    api,
    int_header,
    json_response,
    request_body,
)
from mlray.serving.ingress_sync import IngressSync
from mlray.serving.inputs import columns_from_mapping, columns_from_rows
from mlray.serving.limits import PredictionCache, RateLimiter, cache_key, read_bounded
from mlray.serving.loaded_model import Columns
from mlray.serving.overload import Deadline
from mlray.serving.pipeline_routes import PipelineCalls, actor_invoke
from mlray.serving.protocol import (
    PIN_HEADER,
    InferRequest,
    check_finite,
    decode_inputs,
    encode_infer_response,
    merge_pin,
    model_metadata,
    output_spec,
    parse_version,
    read_infer_request,
    select_outputs,
    server_metadata,
)
from mlray.serving.quota_gate import QuotaGate
from mlray.serving.router import Router
from mlray.serving.settings import ModelServing, ServingConfig
from mlray.serving.telemetry import ServingMetrics
from mlray.serving.traffic import NoHealthyVersion
from mlray.serving.version_calls import VersionCalls

__all__ = ["Ingress", "api", "build_app", "ingress_app"]

VERSION_HEADER = "x-mlray-model-version"
ROUTING_HEADER = "x-mlray-routing-key"


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """One ingress replica (FastAPI routes below; logic in the Router and helpers)."""

    def __init__(self, config: PlatformConfig, serving: ServingConfig) -> None:
        install_log_redaction()
        self.config, self.serving = config, serving
        self.settings = serving.ingress
        self.router = Router(config.project, self.settings.breaker)
        self.metrics = ServingMetrics(config.project)
        self.access = open_access(config, self.settings.auth_cache_ttl_s)
        self.sync = IngressSync(config, self.settings, self.router, self.metrics)
        self.calls = VersionCalls(self.router, self.sync, self.settings.retry_after_s)
        self._online: OnlineStore | None = None
        self._limiter = (RateLimiter(self.settings.rate_limit.requests_per_s,
                                     self.settings.rate_limit.burst)
                         if self.settings.rate_limit else None)
        self._per_model: dict[str, ModelServing] = {}
        self._caches: dict[str, PredictionCache] = {}
        assert config.offline_uri is not None
        self._feedback = FeedbackLog(config.offline_uri, config.project)
        self.sync.load()
        self.quota = QuotaGate(config.namespace, self.sync.credential, [config.project])
        self.quota.load()
        self.pipelines = PipelineCalls(config.project, forward_credential=config.auth == "keys",
                                       invoke=actor_invoke(config.namespace, 60.0),
                                       read=self._read)
        self.sync.start_if_in_loop()  # the view stays fresh whichever endpoint is asked
        gc.freeze()  # long-lived objects leave the collector's scans (tail latency)

    # -- the request path ------------------------------------------------------------------

    async def _read(self, request: Request) -> bytes:
        """The body, read up to ``max_body_bytes`` (413 beyond, chunked bodies too); the
        request's deadline starts here."""
        request.state.deadline = Deadline()
        self.sync.ensure_started()
        declared = request.headers.get("content-length")
        body = await read_bounded(
            request.stream(), self.settings.max_body_bytes,
            declared=int(declared) if declared and declared.isdigit() else None,
            drain_bytes=self.settings.drain_body_bytes)
        if self._limiter is not None:
            client = rate_bucket(request)  # the key's id, never a client-chosen header
            wait = self._limiter.take(client)
            if wait > 0:
                self.metrics.rate_limited()
                raise RateLimited(f"rate limit of {self.settings.rate_limit.requests_per_s:g}"  # type: ignore[union-attr]
                                  f"/s reached for {client!r}", retry_after=wait)
        self.quota.admit(self.config.project)  # the project's rate, across all replicas
        return body

    def _reader(self) -> FeatureReader:
        if self._online is None:
            assert self.config.online_url is not None
            self._online = open_online_store(self.config.online_url,
                                             project=self.config.project,
                                             redis_prefix=self.config.redis_prefix)
        return FeatureReader(self.sync.feature_repo, self._online)

    def _with_features(self, model: str, request: dict[str, Any],
                       version: ModelVersion) -> dict[str, Any]:
        """The request completed from the model's feature service (when it has one)."""
        service = self.router.served(model).feature_service
        if service is None:
            return request
        return fill_from_features(request, version.input_schema, service, self._reader())

    def _model_settings(self, model: str) -> ModelServing:
        found = self._per_model.get(model)
        if found is None:
            found = self._per_model[model] = self.serving.for_model(model)
        return found

    async def predict_columns(self, request: Request, model: str, pinned: int | None,
                              routing_key: str | None,
                              decode: Callable[[ModelVersion], Columns], request_id: str
                              ) -> tuple[ModelVersion, np.ndarray]:
        """Route, decode against the chosen version's schema, and predict (counted and
        logged). The routing key is the header's, else the body's."""
        start = time.perf_counter()
        routing_key = request.headers.get(ROUTING_HEADER) or routing_key
        try:
            version, columns, out = await self._predict_columns(request, model, pinned,
                                                                routing_key, decode)
            check_finite(out, model, version.version)  # never a NaN answered as null
        except MlrayError as exc:
            known = model if model in self.router.models else "unknown"  # bounded labels
            self.metrics.request(known, pinned, exc.code, time.perf_counter() - start)
            raise
        seconds = time.perf_counter() - start
        self.metrics.request(model, version.version, None, seconds)
        if self._model_settings(model).monitor:
            self.sync.log.add(request_id, model, version.version, columns, out,
                              seconds * 1e3, routing_key=routing_key)
            self.sync.sketches.add(model, version.version, columns, out)
        return version, out

    async def _predict_columns(self, request: Request, model: str, pinned: int | None,
                               routing_key: str | None,
                               decode: Callable[[ModelVersion], Columns]
                               ) -> tuple[ModelVersion, Columns, np.ndarray]:
        pinned = merge_pin(int_header(request, PIN_HEADER), pinned)  # both given: must agree
        try:
            route = self.router.route(model, routing_key=routing_key, pinned=pinned)
        except NoHealthyVersion as exc:
            if not await self.sync.refresh_apps():  # a version deployed since the last refresh?
                exc.retry_after = self.router.retry_after(model)  # type: ignore[attr-defined]
                raise
            try:
                route = self.router.route(model, routing_key=routing_key, pinned=pinned)
            except NoHealthyVersion as again:
                again.retry_after = self.router.retry_after(model)  # type: ignore[attr-defined]
                raise
        version = self.router.version(model, route.version)
        try:
            columns = decode(version)
        except MlrayError:
            self.router.breaker(model, route.version).release()
            raise
        settings = self._model_settings(model)
        cache = self._cache(model, settings)
        key = cache_key(model, route.version, columns) if cache is not None else None
        if cache is not None and key is not None:
            hit = cache.get(key)
            self.metrics.cache_lookup(model, route.version, hit is not None)
            if hit is not None:
                self.router.breaker(model, route.version).release()
                return version, columns, hit
        for shadow in route.shadows:
            self.calls.shadow(model, shadow, columns, settings)
        out = await self.calls.call(model, route.version, columns, settings,
                               getattr(request.state, "deadline", None))
        if cache is not None and key is not None:
            cache.put(key, out)
        return version, columns, out

    def _cache(self, model: str, settings: ModelServing) -> PredictionCache | None:
        if not settings.cache.enabled:
            return None
        found = self._caches.get(model)
        if found is None:
            found = self._caches[model] = PredictionCache(settings.cache.max_entries,
                                                          settings.cache.ttl_s)
        return found

    async def _v1(self, request: Request, body: PredictRequest | BatchPredictRequest,
                  decode: Callable[[ModelVersion], Columns]) -> Response:
        start = time.perf_counter()
        request_id = body.requestId or uuid.uuid4().hex
        version, out = await self.predict_columns(request, body.modelName, body.modelVersion,
                                                  body.routingKey, decode, request_id)
        payload: dict[str, Any] = {
            "requestId": request_id,
            "modelName": body.modelName, "modelVersion": version.version}
        if version.output_schema and version.output_schema[0].name == "probability":
            payload["predictions"] = (out >= 0.5).astype(np.int8)
            payload["probabilities"] = out
        else:
            payload["predictions"] = out
        payload["processingTimeMs"] = round((time.perf_counter() - start) * 1e3, 3)
        return json_response(payload, headers={VERSION_HEADER: str(version.version)})

    # -- JSON endpoints ----------------------------------------------------------------------

    @api.post("/v1/predict", response_model=PredictResponse, responses=ERRORS,
              openapi_extra=request_body(PredictRequest), summary="Predict one row or a few rows")
    async def v1_predict(self, request: Request) -> Response:
        body = PredictRequest.model_validate_json(await self._read(request))
        limit = self.settings.max_rows

        def decode(version: ModelVersion) -> Columns:
            if body.instances is not None:
                if self.router.served(body.modelName).feature_service is None:
                    return columns_from_rows(body.instances, version.input_schema, limit)
                names = list(dict.fromkeys(k for row in body.instances for k in row))
                mapping = {k: [row.get(k) for row in body.instances] for k in names}
            else:
                mapping = body.row()
            return columns_from_mapping(self._with_features(body.modelName, mapping, version),
                                        version.input_schema, limit)

        return await self._v1(request, body, decode)

    @api.post("/v1/predict/batch", response_model=PredictResponse, responses=ERRORS,
              openapi_extra=request_body(BatchPredictRequest), summary="Predict a batch (columns)")
    async def v1_predict_batch(self, request: Request) -> Response:
        body = BatchPredictRequest.model_validate_json(await self._read(request))
        limit = self.settings.max_rows

        def decode(version: ModelVersion) -> Columns:
            if body.columns is not None:
                mapping = self._with_features(body.modelName, body.columns, version)
                return columns_from_mapping(mapping, version.input_schema, limit,
                                            where="columns")
            return columns_from_rows(body.instances or [], version.input_schema, limit)

        return await self._v1(request, body, decode)

    @api.get("/v1/models", summary="Served models, their traffic policies and versions")
    async def v1_models(self) -> Response:
        self.sync.ensure_started()
        out, local = [], self.sync.local.loaded()
        for name, served in sorted(self.router.models.items()):
            out.append({
                "name": name, "policy": served.policy.model_dump(mode="json"),
                "versions": [{"version": v, "stage": mv.stage.value,
                              "ready": self.router.is_ready(name, v),
                              "colocated": (local[(name, v)].stats()
                                            if (name, v) in local else None),
                              "breaker": self.router.breaker(name, v).state.value}
                             for v, mv in sorted(served.versions.items())]})
        return json_response({"models": out})

    @api.post("/v1/feedback", responses=ERRORS, openapi_extra=request_body(FeedbackRequest),
              summary="Ground truth for logged predictions (by request id)")
    async def v1_feedback(self, request: Request) -> Response:
        body = FeedbackRequest.model_validate_json(await self._read(request))
        rows = [(item.requestId, item.label, item.row) for item in body.feedback]
        await asyncio.to_thread(self._feedback.write, rows)
        return json_response({"accepted": len(rows)})

    # -- features ----------------------------------------------------------------------------

    @api.post("/v1/features", responses=ERRORS, openapi_extra=request_body(FeaturesRequest),
              summary="Online features of entities, with statuses and event times")
    async def v1_features(self, request: Request) -> Response:
        body = FeaturesRequest.model_validate_json(await self._read(request))
        rows = {len(v) for v in body.entities.values()}
        if rows and max(rows) > self.settings.max_rows:
            raise PayloadTooLarge(f"{max(rows)} entities; at most {self.settings.max_rows}",
                                  field="entities")
        wanted = body.featureService or body.features or []
        found = await self._fresh_on_miss(lambda: asyncio.to_thread(
            self._reader().get_online_features, body.entities, wanted,
            full_feature_names=body.fullFeatureNames))
        return json_response(found.to_dict())

    async def _fresh_on_miss(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``attempt``; on an unknown view or service, reload the definitions (just
        applied?) and try once more."""
        try:
            return await attempt()
        except NotFound:
            await self.sync.reload_repo()
            return await attempt()

    @api.post("/v1/features/push", responses=ERRORS, openapi_extra=request_body(PushRequest),
              summary="Write rows of a feature view (all checked first; none on error)")
    async def v1_features_push(self, request: Request) -> Response:
        body = PushRequest.model_validate_json(await self._read(request))

        def write() -> int:
            repo = self.sync.feature_repo
            bound = repo.bind(body.view)
            written = 0
            if body.to in ("offline", "both"):
                assert self.config.offline_uri is not None
                written = OfflineStore(self.config.offline_uri, repo,
                                       project=self.config.project).write(body.view, body.rows)
            if body.to in ("online", "both"):
                written = max(written, self._reader().online.write(bound, body.rows))
            return written

        written = await self._fresh_on_miss(lambda: asyncio.to_thread(write))
        return json_response({"view": body.view, "rows": written, "to": body.to})

    # -- Open Inference Protocol (V2) ------------------------------------------------------

    @api.get("/v2", summary="Server metadata (V2): name, version, supported extensions")
    async def v2_server(self) -> Response:
        return json_response(server_metadata())

    @api.get("/v2/health/live", summary="Liveness")
    async def v2_live(self) -> Response:
        return json_response({"live": True})

    @api.get("/v2/health/ready",
             summary="Readiness of the server: it can serve (its view of the served models "
                     "is loaded); a model's readiness is /v2/models/{model}/ready")
    async def v2_ready(self) -> Response:
        self.sync.ensure_started()
        ready = self.sync.loaded
        return json_response({"ready": ready}, 200 if ready else 503)

    def _metadata(self, model: str, version: int | None) -> dict[str, Any]:
        served = self.router.served(model)
        number = version if version is not None else max(served.policy.serving)
        return model_metadata(model, served.versions, self.router.version(model, number))

    @api.get("/v2/models/{model}", responses=ERRORS, summary="Model metadata (V2)")
    async def v2_model(self, model: str) -> Response:
        self.sync.ensure_started()
        return json_response(self._metadata(model, None))

    @api.get("/v2/models/{model}/versions/{version}", responses=ERRORS,
             summary="Model version metadata (V2)")
    async def v2_model_version(self, model: str, version: str = VERSION_PATH) -> Response:
        self.sync.ensure_started()
        return json_response(self._metadata(model, parse_version(version)))

    @api.get("/v2/models/{model}/ready", responses=ERRORS, summary="Model readiness (V2)")
    async def v2_model_ready(self, model: str) -> Response:
        self.sync.ensure_started()
        served = self.router.served(model)
        ready = any(self.router.is_ready(model, v) for v in served.policy.serving)
        return json_response({"name": model, "ready": ready}, 200 if ready else 503)

    @api.get("/v2/models/{model}/versions/{version}/ready", responses=ERRORS,
             summary="Model version readiness (V2)")
    async def v2_version_ready(self, model: str, version: str = VERSION_PATH) -> Response:
        self.sync.ensure_started()
        number = parse_version(version)
        self.router.version(model, number)
        ready = self.router.is_ready(model, number)
        return json_response({"name": model, "version": str(number), "ready": ready},
                     200 if ready else 503)

    async def _infer(self, request: Request, model: str, version: int | None) -> Response:
        body = read_infer_request(await self._read(request), request.headers)
        limit = self.settings.max_rows
        wanted: list[tuple[str, bool]] = []

        def decode(mv: ModelVersion) -> Columns:
            wanted[:] = select_outputs(body, [output_spec(mv).name])
            arrays = decode_inputs(body, mv.input_schema)
            rows = len(next(iter(arrays.values())))
            if rows > limit:
                raise PayloadTooLarge(f"{rows} rows; at most {limit} per request",
                                      field="inputs")
            if rows == 0:
                raise InvalidInput("inputs have no rows", field="inputs")
            return {k: v.reshape(rows) if v.ndim > 1 and v.size == rows else v
                    for k, v in arrays.items()}

        request_id = body.id or uuid.uuid4().hex
        mv, out = await self.predict_columns(request, model, version, None, decode, request_id)
        content, media, headers = encode_infer_response(
            model, mv.version, request_id, [(name, binary, out) for name, binary in wanted])
        return Response(content, media_type=media,
                        headers={**headers, VERSION_HEADER: str(mv.version)})

    _INFER = ("JSON (application/json), or with the binary tensor data extension: the JSON "
              "header, then the tensors' bytes (Inference-Header-Content-Length gives the "
              "JSON's length; application/octet-stream or no Content-Type). Outputs come as "
              "binary when asked (binary_data, binary_data_output).")

    @api.post("/v2/models/{model}/infer", responses=ERRORS,
              openapi_extra=request_body(InferRequest),
              summary="Inference (V2), routed by the traffic policy", description=_INFER)
    async def v2_infer(self, model: str, request: Request) -> Response:
        return await self._infer(request, model, None)

    @api.post("/v2/models/{model}/versions/{version}/infer", responses=ERRORS,
              openapi_extra=request_body(InferRequest), summary="Inference (V2) on one version",
              description=_INFER)
    async def v2_infer_version(self, request: Request, model: str,
                               version: str = VERSION_PATH) -> Response:
        return await self._infer(request, model, parse_version(version))


def ingress_app(config: PlatformConfig, serving: ServingConfig) -> Application:
    """The ingress application with the serving config's replica settings."""
    settings = serving.ingress
    return Ingress.options(
        num_replicas=settings.num_replicas, max_ongoing_requests=settings.max_ongoing_requests,
        max_queued_requests=settings.max_queued_requests,
        backpressure_config=BackpressureConfig(status_code=503,
                                               retry_after_s=settings.retry_after_s),
        ray_actor_options={"num_cpus": settings.num_cpus,
                           "resources": dict(settings.replica_resources)},
    ).bind(config, serving)


def build_app(args: dict[str, Any]) -> Application:
    """Serve's app builder (``import_path: mlray.serving.ingress:build_app`` in serve.yaml).

    ``args`` may name a platform config file (``config``) and override its fields
    (``namespace``, ``project``, ...); the serving settings come from the platform
    config's ``serving_config``. The control-plane actors are started here when they do
    not run yet (idempotent: named, ``get_if_exists``), so a deploy of this app (a KubeRay
    RayService) brings the whole platform up before any ingress replica looks for them.
    """
    from actors import start_actors
    from mlray.config import load_config
    from mlray.serving.settings import load_serving_config

    overrides = dict(args or {})
    config = load_config(overrides.pop("config", None))
    if overrides:
        config = PlatformConfig.model_validate({**config.model_dump(), **overrides})
    start_actors(config)
    return ingress_app(config, load_serving_config(config.serving_config))

