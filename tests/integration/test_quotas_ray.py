"""Quotas on the shared test Ray and Serve: two ingress replicas together hold a project
to its request rate, and usage counts the requests and the model's replica-seconds."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from tests.conftest import wait_for
from tests.integration.platform import Platform
from tests.integration.serving_models import register_model

RPS = 2.0


def test_two_ingress_replicas_share_the_rate_quota_and_usage_counts(platform: Platform
                                                                    ) -> None:
    from ray import serve

    import mlray
    from mlray.serving.ingress import ingress_app
    from mlray.serving.settings import load_serving_config

    project = f"q{uuid.uuid4().hex[:8]}"
    client = mlray.connect(config=platform.config, project=project)
    model = f"m{uuid.uuid4().hex[:8]}"
    register_model(client, model, platform.tmp)
    rollout = client.serving.deploy(model, 1, strategy="direct", wait=True, timeout_s=240)
    assert rollout.status == "succeeded", rollout.history
    client.quotas.set(requests_per_s=RPS)

    config = platform.config.model_copy(update={"project": project})
    serving = load_serving_config(config.serving_config)
    serving = serving.model_copy(update={"ingress": serving.ingress.model_copy(
        update={"num_replicas": 2, "rate_limit": None})})
    name = f"quota{uuid.uuid4().hex[:6]}"
    serve.run(ingress_app(config, serving), name=name, route_prefix=f"/{name}")
    http = httpx.Client(base_url=f"{platform.url}/{name}", timeout=60)
    try:
        frame = generate_fraud(1, seed=3)
        body = {"modelName": model,
                "columns": {c: frame[c].tolist() for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}}

        def served() -> bool:
            return http.post("/v1/predict/batch", json=body).status_code in (200, 429)

        wait_for(served, timeout=60, interval=0.5)
        counted = client.quotas.usage()
        start = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: http.post("/v1/predict/batch", json=body),
                                    range(80)))
        elapsed = time.monotonic() - start
        codes = [r.status_code for r in replies]
        assert set(codes) <= {200, 429}, [r.text for r in replies if r.status_code not in
                                          (200, 429)][:3]
        admitted, refused = codes.count(200), codes.count(429)
        # All replicas together spend one budget: the rate for the time taken plus one
        # second's burst. Each replica holding its own would admit about twice that.
        assert refused > 0 and admitted <= RPS * (elapsed + 1) + 1, (admitted, elapsed)
        limited = next(r for r in replies if r.status_code == 429)
        assert limited.json()["code"] == "quota_exceeded"
        assert limited.json()["field"] == "requests_per_s"
        assert f"project '{project}'" in limited.json()["error"]
        assert int(limited.headers["Retry-After"]) >= 1

        def usage_counted() -> bool:
            now = client.quotas.usage()
            return (now.requests - counted.requests >= admitted
                    and now.requests_refused - counted.requests_refused >= refused
                    and now.replica_seconds > 0)

        wait_for(usage_counted, timeout=30, interval=0.5)
        report = client.quotas.usage()
        assert report.limits.requests_per_s == RPS
        assert report.in_use["deployments"] == 1 and report.storage_bytes > 0
    finally:
        serve.delete(name)
        client.quotas.set(requests_per_s=None)
        client.registry.delete_model(model, force=True)
