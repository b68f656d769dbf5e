"""Serving over real HTTP: Ray Serve model apps, the mlray ingress, rollouts, breakers.

One platform (actors, Serve on a free port, the ingress; tests/integration/conftest.py)
serves the session: Serve applications are cluster-wide, so tests share it and use their
own models.
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from tests.conftest import OwnRay, wait_for
from tests.integration.platform import Platform, tamper
from tests.integration.serving_models import FAULTY, register_model, set_fault

pytestmark = pytest.mark.slow


def test_direct_deploy_then_v1_and_v2_predictions(platform: Platform) -> None:
    model = platform.model()
    platform.deploy(model, 1)
    reply = platform.predict(model, rows=5, requestId="r-1")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert reply.headers["x-mlray-model-version"] == "1"
    assert body["modelVersion"] == 1 and body["requestId"] == "r-1"
    assert len(body["probabilities"]) == 5
    assert all(0 <= p <= 1 for p in body["probabilities"])
    assert body["predictions"] == [int(p >= 0.5) for p in body["probabilities"]]

    one = generate_fraud(5, seed=7).iloc[0]
    row = {c: (float(one[c]) if c in FRAUD_NUMERIC else str(one[c]))
           for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}
    single = platform.http.post("/v1/predict", json={"modelName": model, "features": row})
    assert single.status_code == 200, single.text
    assert math.isclose(single.json()["probabilities"][0], body["probabilities"][0],
                        rel_tol=1e-5)

    inputs = [{"name": c, "shape": [1], "datatype": "FP64" if c in FRAUD_NUMERIC else "BYTES",
               "data": [row[c]]} for c in row]
    v2 = platform.http.post(f"/v2/models/{model}/infer", json={"id": "x", "inputs": inputs})
    assert v2.status_code == 200, v2.text
    assert v2.json()["model_version"] == "1" and v2.json()["id"] == "x"
    assert math.isclose(v2.json()["outputs"][0]["data"][0], body["probabilities"][0],
                        rel_tol=1e-5)
    meta = platform.http.get(f"/v2/models/{model}").json()
    assert {i["name"] for i in meta.get("inputs", [])} == set(row), meta
    assert platform.http.get(f"/v2/models/{model}/ready").json()["ready"] is True
    assert platform.http.get("/v2/health/live").status_code == 200


def test_bad_input_gets_clear_errors(platform: Platform) -> None:
    model = platform.model()
    platform.deploy(model, 1)
    post = platform.http.post
    cases = [
        (post("/v1/predict", content=b"{not json"), 400, None),
        (post("/v1/predict", json={"modelName": "nope", "features": {"amount": 1}}), 404,
         "model"),
        (post("/v1/predict", json={"modelName": model, "features": {"amount": 1}}), 400,
         "hour"),
        (post("/v1/predict", json={"modelName": model, "instances": [
            {**{c: 1.0 for c in FRAUD_NUMERIC}, **{c: "a" for c in FRAUD_CATEGORICAL},
             "amount": "lots"}]}), 400, "amount"),
        (post("/v1/predict", json={"modelName": model, "features": {"amount": 1},
                                   "modelVersion": 9}), 404, "x-mlray-version"),
        (post("/v1/predict/batch", json={"modelName": model, "columns": {
            c: [1.0] * 1001 for c in FRAUD_NUMERIC}}), 413, None),
        (post("/v1/predict", content=b"x" * 300_000,
              headers={"content-type": "application/json"}), 413, "body"),
        (post(f"/v2/models/{model}/infer", json={"inputs": [
            {"name": "amount", "shape": [2], "datatype": "FP64", "data": [1.0]}]}), 400, None),
        (platform.http.get("/v2/models/nope"), 404, "model"),
    ]
    for reply, status, field in cases:
        assert reply.status_code == status, (reply.request.url, reply.text)
        body = reply.json()
        assert {"error", "code"} <= set(body), body
        if field:
            assert body.get("field") == field, body


def test_weighted_split_sticky_keys_and_pin(platform: Platform) -> None:
    model = platform.model(versions=2)
    platform.deploy(model, 1)
    platform.client.serving.deploy(model, 2, strategy="shadow", wait=True, timeout_s=240)
    platform.client.serving.traffic(model, {1: 90, 2: 10}, sticky=False)
    platform.wait_served(model, {1, 2})
    wait_for(lambda: platform.http.get("/v1/models").json()["models"] and any(
        m["name"] == model and m["policy"]["weights"] == {"1": 90.0, "2": 10.0}
        for m in platform.http.get("/v1/models").json()["models"]), timeout=5, interval=0.1)

    n = 4_000
    columns = {c: [1.0] for c in FRAUD_NUMERIC} | {c: ["x"] for c in FRAUD_CATEGORICAL}
    body = {"modelName": model, "columns": columns}

    def one(_: int) -> str:
        reply = platform.http.post("/v1/predict/batch", json=body)
        assert reply.status_code == 200, reply.text
        return reply.headers["x-mlray-model-version"]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        counts = Counter(pool.map(one, range(n)))
    p = 0.10
    half_width = 3.29 * math.sqrt(n * p * (1 - p))  # two-sided 99.9%
    assert abs(counts["2"] - n * p) <= half_width, counts
    assert counts["1"] + counts["2"] == n

    platform.client.serving.traffic(model, {1: 50, 2: 50}, sticky=True)
    wait_for(lambda: any(m["name"] == model and m["policy"]["sticky"]
                         for m in platform.http.get("/v1/models").json()["models"]),
             timeout=5, interval=0.1)
    for key in [f"user-{i}" for i in range(20)]:
        seen = {platform.predict(model, headers={"x-mlray-routing-key": key})
                .headers["x-mlray-model-version"] for _ in range(5)}
        assert len(seen) == 1, (key, seen)
    by_field = {platform.predict(model, routingKey="user-3").headers["x-mlray-model-version"]
                for _ in range(5)}
    assert len(by_field) == 1
    for pin in ("1", "2"):
        for _ in range(5):
            reply = platform.predict(model, headers={"x-mlray-version": pin})
            assert reply.headers["x-mlray-model-version"] == pin


def test_shadow_gets_copies_and_never_answers(platform: Platform) -> None:
    from mlray.serving.deployer import ServeDeployer

    model = platform.model(versions=2)
    platform.deploy(model, 1)
    rollout = platform.client.serving.deploy(model, 2, strategy="shadow", wait=True,
                                             timeout_s=240)
    assert rollout.status == "succeeded"
    platform.wait_served(model, {1, 2})
    deployer = ServeDeployer(platform.config)
    before = deployer.stats(platform.project, model, 2)[0]["rows"]
    answered = Counter(platform.predict(model, rows=3).headers["x-mlray-model-version"]
                       for _ in range(30))
    assert answered == {"1": 30}
    wait_for(lambda: deployer.stats(platform.project, model, 2)[0]["rows"] >= before + 90,
             timeout=20)


def test_batching_batches_under_concurrent_load(platform: Platform) -> None:
    from mlray.serving.deployer import ServeDeployer

    model = platform.model()
    platform.deploy(model, 1)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(lambda _: platform.predict(model).status_code, range(400)))
    assert codes.count(200) == 400
    sizes = ServeDeployer(platform.config).stats(platform.project, model, 1)[0]["batch_sizes"]
    assert max(int(k) for k in sizes) > 1, sizes
    print(f"batch sizes under 32 concurrent clients: {dict(sorted(sizes.items()))}")


def test_a_colocated_version_answers_in_the_ingress_and_follows_retunes(platform: Platform
                                                                      ) -> None:
    from mlray.serving.deployer import ServeDeployer

    model = "localmodel"  # colocate: true in the platform's serving.yaml
    register_model(platform.client, model, platform.tmp, seed=0)
    platform.deploy(model, 1)
    first = platform.predict(model, rows=5)  # the app answers while the ingress loads
    assert first.status_code == 200, first.text

    def colocated() -> dict[str, Any] | None:
        models = platform.http.get("/v1/models").json()["models"]
        return next(m for m in models if m["name"] == model)["versions"][0]["colocated"]

    wait_for(lambda: colocated() is not None, timeout=60)
    deployer = ServeDeployer(platform.config)
    app_rows = deployer.stats(platform.project, model, 1)[0]["rows"]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: platform.predict(model, rows=5), range(200)))
    assert {r.status_code for r in replies} == {200}
    assert {r.headers["x-mlray-model-version"] for r in replies} == {"1"}
    expected = first.json()["probabilities"]
    assert all(r.json()["probabilities"] == pytest.approx(expected, rel=1e-5) for r in replies)
    # no request reached the app
    assert deployer.stats(platform.project, model, 1)[0]["rows"] == app_rows
    stats = colocated()
    assert stats is not None and stats["rows"] >= 1000
    assert max(int(k) for k in stats["batch_sizes"]) > 1, stats

    platform.client.serving.retune(model, 1, max_batch_size=2)
    wait_for(lambda: (colocated() or {}).get("tuning", {}).get("max_batch_size") == 2,
             timeout=20)


def test_failing_version_trips_breaker_fails_over_and_recovers(platform: Platform) -> None:
    model = platform.model(model_type=FAULTY, versions=1)
    register_model(platform.client, model, platform.tmp, seed=1)  # v2: a healthy MLP
    platform.deploy(model, 1)
    platform.client.serving.deploy(model, 2, strategy="shadow", wait=True, timeout_s=240)
    platform.client.serving.traffic(model, {1: 50, 2: 50}, sticky=False)
    platform.wait_served(model, {1, 2})
    try:
        set_fault("fail")
        codes = Counter(platform.predict(model).status_code for _ in range(40))
        assert codes[500] <= 5, codes  # the breaker opens after 3 failures (per replica)
        wait_for(lambda: platform.client.serving.breakers().get(f"{model}/1") is not None
                 and platform.client.serving.breakers()[f"{model}/1"].state == "open",
                 timeout=10)
        answered = Counter(platform.predict(model).headers.get("x-mlray-model-version")
                           for _ in range(20))
        # Every 2 s (recovery timeout) the open breaker lets one probe through to v1, which
        # fails while the fault lasts; everything else is answered by v2.
        assert set(answered) <= {"2", None} and answered["2"] >= 17, answered
        pinned = platform.predict(model, headers={"x-mlray-version": "1"})
        assert pinned.status_code == 503 and "retry-after" in pinned.headers
    finally:
        set_fault(None)

    def closed_again() -> bool:
        platform.predict(model)
        state = platform.client.serving.breakers().get(f"{model}/1")
        return state is not None and state.state == "closed"

    wait_for(closed_again, timeout=30, interval=0.3)
    assert platform.predict(model, headers={"x-mlray-version": "1"}).status_code == 200


def test_canary_reaches_100_percent(platform: Platform) -> None:
    model = platform.model(versions=2)
    platform.deploy(model, 1)
    rollout = platform.client.serving.deploy(model, 2, strategy="canary")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        done = pool.submit(platform.client.serving.wait, rollout.id, 240)
        while not done.done():
            platform.predict(model)
        final = done.result()
    assert final.status == "succeeded", final.history
    assert platform.client.registry.get_traffic(model).weights == {2: 100.0}
    assert [e.message for e in final.history if e.message.startswith("canary at")] == [
        "canary at 10%", "canary at 50%", "canary at 100%"]


def test_failing_canary_rolls_back_by_itself_and_says_why(platform: Platform) -> None:
    model = platform.model(versions=1)
    register_model(platform.client, model, platform.tmp, seed=1, model_type=FAULTY)
    platform.deploy(model, 1)
    rollout = platform.client.serving.deploy(model, 2, strategy="canary")
    try:
        wait_for(lambda: platform.client.serving.rollout(rollout.id).phase == "steps",
                 timeout=240, interval=0.3)
        set_fault("fail")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = pool.submit(platform.client.serving.wait, rollout.id, 120)
            while not done.done():
                platform.predict(model)
            final = done.result()
    finally:
        set_fault(None)
    assert final.status == "rolled_back", final.history
    assert "canary gate failed" in (final.reason or "") and "error rate" in final.reason
    assert platform.client.registry.get_traffic(model).weights == {1: 100.0}
    audit = platform.client.registry.audit_log(limit=1000)
    assert any(e.action == "rollout.rollback" and "error rate" in str(e.after) for e in audit)


def test_rollback_by_hand_restores_the_previous_policy(platform: Platform) -> None:
    model = platform.model(versions=2)
    platform.deploy(model, 1)
    platform.deploy(model, 2, strategy="blue-green")
    assert platform.client.registry.get_traffic(model).weights == {2: 100.0}
    rolled = platform.client.serving.rollback(model)
    assert rolled.status == "rolled_back"
    assert platform.client.registry.get_traffic(model).weights == {1: 100.0}
    platform.wait_served(model, {1})
    wait_for(lambda: platform.predict(model).headers.get("x-mlray-model-version") == "1",
             timeout=10, interval=0.2)


def test_retune_batching_live(platform: Platform) -> None:
    model = platform.model()
    platform.deploy(model, 1)
    serving = platform.client.serving.retune(model, 1, max_batch_size=4)
    assert serving.tuning.max_batch_size == 4
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda _: platform.predict(model), range(100)))
    from mlray.serving.deployer import ServeDeployer

    sizes = ServeDeployer(platform.config).stats(platform.project, model, 1)[0]["batch_sizes"]
    assert max(int(k) for k in sizes) <= 4, sizes


def test_openapi_describes_the_endpoints(platform: Platform) -> None:
    spec = platform.http.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/models", "/v2/models/{model}/infer",
            "/v2/health/ready"} <= set(spec["paths"])
    assert "PredictRequest" in spec["components"]["schemas"]
    assert platform.http.get("/docs").status_code == 200



def test_a_real_v2_client_round_trips(platform: Platform) -> None:
    import numpy as np
    import tritonclient.http as triton

    model = platform.model()
    platform.deploy(model, 1)
    frame = generate_fraud(4, seed=3)
    client = triton.InferenceServerClient(url=platform.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_model_ready(model)
    meta = client.get_model_metadata(model)
    assert (meta["name"] == model and len(meta["inputs"]) == 20) or meta["inputs"]
    inputs = []
    for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]:
        numeric = c in FRAUD_NUMERIC
        array = (frame[c].to_numpy(dtype=np.float64) if numeric
                 else frame[c].astype(str).str.encode("utf-8").to_numpy(dtype=object))
        item = triton.InferInput(c, [4], "FP64" if numeric else "BYTES")
        item.set_data_from_numpy(array, binary_data=False)
        inputs.append(item)
    result = client.infer(model, inputs, outputs=[
        triton.InferRequestedOutput("probability", binary_data=False)])
    probabilities = result.as_numpy("probability")
    assert probabilities.shape == (4,) and ((probabilities >= 0) & (probabilities <= 1)).all()
    columns = {c: frame[c].tolist() for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}
    direct = platform.http.post("/v1/predict/batch", json={"modelName": model,
                                                            "columns": columns}).json()
    assert np.allclose(probabilities, direct["probabilities"], rtol=1e-5)


def _fuzz(operation: Any, url: str, calls: Counter[str], failures: list[str], *,
          headers: dict[str, str] | None = None, max_examples: int = 25) -> None:
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=max_examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=url, timeout=30, headers=headers)
        calls[operation.label] += 1
        if response.status_code >= 500:
            failures.append(f"{operation.label} -> {response.status_code}: "
                            f"{response.text[:200]}")

    check()


def test_fuzzing_the_openapi_spec_finds_no_5xx(platform: Platform) -> None:
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{platform.url}/openapi.json")
    failures: list[str] = []
    calls: Counter[str] = Counter()
    for result in schema.get_all_operations():
        _fuzz(result.ok(), platform.url, calls, failures)
    print(f"fuzzed {sum(calls.values())} requests over {len(calls)} operations")
    assert len(calls) >= 10
    assert not failures, failures[:5]


def test_killing_a_model_replica_under_load_loses_few_requests(platform: Platform,
                                                              ray_shared: OwnRay) -> None:
    import ray

    list_actors = ray_shared.list_actors

    model = platform.model()
    rollout = platform.client.serving.deploy(model, 1, strategy="direct", wait=True,
                                             timeout_s=240, overrides={"num_replicas": 2})
    assert rollout.status == "succeeded", rollout.history
    platform.wait_served(model, {1})
    codes: Counter[int] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=platform.url, timeout=30) as http:
            while not stop.is_set():
                body = {"modelName": model, "columns": {c: [1.0] for c in FRAUD_NUMERIC}
                        | {c: ["x"] for c in FRAUD_CATEGORICAL}}
                codes[http.post("/v1/predict/batch", json=body).status_code] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2)
    replicas = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
                if a.name and f"{model}--v1" in a.name and "ModelServer" in a.name]
    assert len(replicas) == 2, [a.name for a in replicas]
    ray.kill(ray.get_actor(replicas[0].name, namespace="serve"), no_restart=True)
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join()
    total = sum(codes.values())
    errors = total - codes[200]
    print(f"replica kill under load: {errors} errors in {total} requests ({dict(codes)})")
    assert total > 50 and errors <= max(5, total // 20), codes

    def replaced() -> bool:
        alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000)
                 if a.name and f"{model}--v1" in a.name and "ModelServer" in a.name]
        return len(alive) == 2
    wait_for(replaced, timeout=60, interval=0.5)


def test_cli_deploys_sets_traffic_rolls_back_and_shows_status(platform: Platform) -> None:
    model = platform.model(versions=2)
    out = platform.cli("deploy", model, "--version", "1", "--strategy", "direct", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout[out.stdout.index("{"):])["status"] == "succeeded"
    out = platform.cli("deploy", model, "-v", "2", "-s", "blue-green", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    out = platform.cli("traffic", model, "v1=70", "v2=30", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout[out.stdout.index("{"):])["weights"] == {"1": 70.0, "2": 30.0}
    bad = platform.cli("traffic", model, "v1=abc")
    assert bad.returncode == 2 and "vN=share" in bad.stderr
    out = platform.cli("rollback", model, "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    assert platform.client.registry.get_traffic(model).weights == {1: 100.0}
    status = platform.cli("status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    info = json.loads(status.stdout[status.stdout.index("{"):])
    assert {a["app"] for a in info["serving"]["apps"]} >= {f"{platform.project}--{model}--v1"}
    listed = platform.cli("rollouts", model, "--json")
    assert [r["strategy"] for r in json.loads(listed.stdout[listed.stdout.index("["):])] == [
        "blue-green", "direct"]


def test_metrics_are_scraped_from_ray_and_predictions_are_logged(platform: Platform) -> None:
    import urllib.request

    import pyarrow.dataset as ds
    import ray
    from prometheus_client.parser import text_string_to_metric_families

    model = platform.model()
    platform.deploy(model, 1)
    for i in range(20):  # 200 rows: enough for drift verdicts (min_rows 100)
        assert platform.predict(model, rows=10, requestId=f"req-{i}").status_code == 200
    assert platform.predict("no-such-model").status_code == 404
    feedback = platform.http.post("/v1/feedback", json={"feedback": [
        {"requestId": "req-0", "label": 1, "row": 0}, {"requestId": "req-0", "label": 0,
                                                       "row": 1}]})
    assert feedback.status_code == 200 and feedback.json() == {"accepted": 2}

    port = ray.nodes()[0]["MetricsExportPort"]

    def samples() -> dict[str, list[Any]]:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        found: dict[str, list[Any]] = {}
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                if sample.labels.get("model") in (model, "unknown"):
                    found.setdefault(sample.name, []).append(sample)
        return found

    def scraped() -> bool:
        got = samples()
        ok = [s for s in got.get("ray_mlray_requests_total", [])
              if s.labels["model"] == model and s.value >= 20]
        return bool(ok) and "ray_mlray_request_latency_seconds_bucket" in got \
            and "ray_mlray_batch_size_bucket" in got
    wait_for(scraped, timeout=90, interval=2.0)
    got = samples()
    assert any(s.labels["code"] == "not_found" and s.labels["model"] == "unknown"
               for s in got["ray_mlray_request_errors_total"])

    logs = Path(str(platform.config.offline_uri)) / platform.project
    root = logs / "predictions" / f"model={model}"
    wait_for(lambda: root.exists() and ds.dataset(str(root), partitioning="hive")
             .count_rows() >= 40, timeout=30, interval=0.5)
    table = ds.dataset(str(root), partitioning="hive").to_table()
    assert set(table.column("request_id").to_pylist()) == {f"req-{i}" for i in range(20)}
    assert {"input_amount", "input_country", "prediction", "latency_ms"} <= set(
        table.column_names)
    labels = ds.dataset(str(logs / "feedback"), partitioning="hive").to_table()
    assert labels.num_rows >= 2
    live = platform.client.monitoring.performance(model, 1)
    assert (live.predictions, live.labelled) == (200, 2) and "accuracy" in live.metrics
    # ... and the monitor keeps them as values alert rules read (recomputed every 15 s).
    wait_for(lambda: any(m == "mlray_model_accuracy" and labels["model"] == model
                         for m, labels, _, _ in platform.client.monitoring.values()),
             timeout=60, interval=2.0)

    # The replicas' sketches reach the monitor: drift against the training baseline.
    wait_for(lambda: platform.client.monitoring.drift(model, 1).rows >= 200, timeout=30,
             interval=0.5)
    report = platform.client.monitoring.drift(model, 1)
    assert {f.feature for f in report.features} >= {"amount", "country"}

    # The monitor and the breakers actor export their values as gauges beside the data
    # plane's metrics: drift, and the error ratio and latency quantiles rules read.
    def derived() -> bool:
        found = samples()
        return (any(s.labels.get("feature") == "amount"
                    for s in found.get("ray_mlray_drift_psi", []))
                and "ray_mlray_drift_share" in found
                and any(s.labels.get("model") == model and s.value == 0
                        for s in found.get("ray_mlray_request_error_ratio", []))
                and any(s.labels.get("model") == model and s.labels["quantile"] == "0.99"
                        and s.value > 0 for s in
                        found.get("ray_mlray_request_latency_quantile_seconds", [])))

    wait_for(derived, timeout=90, interval=2.0)

    # The alerts actor evaluates its rules over the monitor's and the breakers' values.
    platform.client.alerts.evaluate()
    platform.client.alerts.evaluate()
    firing = {(a.alertname, a.state) for a in platform.client.alerts.list()
              if a.labels.get("model") == model}
    assert firing == {("DriftMeasured", "firing"), ("LatencyMeasured", "firing")}, firing
    listed = platform.cli("alerts", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert any(a["labels"].get("model") == model
               for a in json.loads(listed.stdout[listed.stdout.index("["):]))


def test_prediction_cache_answers_repeats_without_the_model(platform: Platform) -> None:
    from mlray.serving.deployer import ServeDeployer

    register_model(platform.client, "cachedmodel", platform.tmp, seed=4)
    platform.deploy("cachedmodel", 1)
    first = platform.predict("cachedmodel", rows=3).json()
    deployer = ServeDeployer(platform.config)
    before = deployer.stats(platform.project, "cachedmodel", 1)[0]["rows"]
    again = [platform.predict("cachedmodel", rows=3).json() for _ in range(5)]
    assert all(a["probabilities"] == first["probabilities"] for a in again)
    assert deployer.stats(platform.project, "cachedmodel", 1)[0]["rows"] == before
    other = platform.predict("cachedmodel", rows=4)  # a different input goes to the model
    assert other.status_code == 200
    assert deployer.stats(platform.project, "cachedmodel", 1)[0]["rows"] == before + 4


def test_a_model_slower_than_its_timeout_gets_504(platform: Platform) -> None:
    register_model(platform.client, "slowmodel", platform.tmp, seed=5, model_type=FAULTY)
    platform.deploy("slowmodel", 1)
    # Warm, it answers within its 0.1 s (a first call on a loaded machine may not).
    wait_for(lambda: platform.predict("slowmodel").status_code == 200, timeout=60,
             interval=0.5)
    try:
        set_fault("slow")
        slow = platform.predict("slowmodel", rows=2)
        assert slow.status_code == 504 and slow.json()["code"] == "timeout", slow.text
    finally:
        set_fault(None)
    wait_for(lambda: platform.predict("slowmodel").status_code == 200, timeout=30,
             interval=0.5)


# -- deploys and load (issue 11: items 10, 11, 14, 17) --------------------------------------


def test_server_readiness_is_the_ingress_and_model_readiness_is_per_model(platform: Platform
                                                                          ) -> None:
    healthy = platform.model()
    platform.deploy(healthy, 1)
    broken = platform.model()
    # A policy for a version whose app cannot start (its artifact no longer matches its
    # sha256), as after a restart that lost it: a served model without a running app.
    version = platform.client.registry.get_version(broken, 1)
    tamper(str(platform.config.artifact_uri), version.artifact_uri)
    platform.client.serving.traffic(broken, {1: 100})

    def broken_known_and_down() -> bool:
        return platform.http.get(f"/v2/models/{broken}/ready").status_code == 503

    wait_for(broken_known_and_down, timeout=180, interval=0.5)
    ready = platform.http.get("/v2/health/ready")
    assert ready.status_code == 200 and ready.json() == {"ready": True}, ready.text
    assert platform.http.get(f"/v2/models/{healthy}/ready").json()["ready"] is True
    assert platform.http.get(f"/v2/models/{broken}/ready").json()["ready"] is False
    assert platform.http.get("/v2/models/nosuchmodel/ready").status_code == 404


def test_v2_metadata_and_readiness_follow_deploys_with_no_other_request(platform: Platform
                                                                        ) -> None:
    """A fresh ingress replica asked only V2 GETs sees a deploy and a removal."""
    import uuid

    from ray import serve

    from mlray.serving.ingress import ingress_app
    from mlray.serving.settings import load_serving_config

    name = f"fresh{uuid.uuid4().hex[:8]}"
    serve.run(ingress_app(platform.config, load_serving_config(platform.config.serving_config)),
              name=name, route_prefix=f"/{name}")
    try:
        fresh = httpx.Client(base_url=f"{platform.url}/{name}", timeout=30)
        assert fresh.get("/v2/health/ready").status_code == 200
        model = platform.model(versions=2)
        assert fresh.get(f"/v2/models/{model}").status_code == 404
        platform.client.serving.deploy(model, 1, strategy="direct", wait=True, timeout_s=240)
        wait_for(lambda: fresh.get(f"/v2/models/{model}/versions/1/ready").status_code == 200,
                 timeout=30, interval=0.2)
        assert fresh.get(f"/v2/models/{model}/ready").json()["ready"] is True
        platform.client.serving.deploy(model, 2, strategy="direct", wait=True, timeout_s=240)

        def only_v2() -> bool:
            meta = fresh.get(f"/v2/models/{model}")
            return (meta.status_code == 200 and meta.json()["versions"] == ["2"]
                    and fresh.get(f"/v2/models/{model}/versions/2/ready").status_code == 200)

        wait_for(only_v2, timeout=30, interval=0.2)
        wait_for(lambda: fresh.get(f"/v2/models/{model}/versions/1").status_code == 404,
                 timeout=30, interval=0.2)
    finally:
        serve.delete(name)


def _generated(chunk: bytes, chunks: int, sent: list[int]) -> Any:
    for _ in range(chunks):
        sent[0] += 1
        yield chunk


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
def test_a_chunked_body_past_the_limit_gets_a_413_the_client_reads(platform: Platform,
                                                                   connection: str) -> None:
    sent = [0]  # 8 MiB, chunked (no Content-Length); the platform allows 200 kB
    with httpx.Client(timeout=60) as client:
        reply = client.post(f"{platform.url}/v1/predict",
                            content=_generated(b" " * 65_536, 128, sent),
                            headers={"content-type": "application/json",
                                     "connection": connection})
    assert reply.status_code == 413, reply.text
    assert reply.json()["code"] == "payload_too_large" and reply.json()["field"] == "body"
    assert "more than 200000 bytes" in reply.json()["error"]  # counted, not read whole
    assert platform.http.get("/v2/health/live").status_code == 200


def test_reading_a_chunked_body_stops_at_the_limit(platform: Platform) -> None:
    """A client that sends a huge chunked body and watches for an early answer gets its
    413 long before it has sent the body (the whole of which the ingress would read)."""
    import select
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(platform.url)
    chunk = b" " * 16_384
    total = 8192  # 128 MiB
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent, answer = 0, b""
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: mlray\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        try:
            while sent < total:
                sock.sendall(frame)
                sent += 1
                if select.select([sock], [], [], 0.002)[0]:  # an answer came: stop sending
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed after its answer: read the answer
        while b"}" not in answer:
            data = sock.recv(65_536)
            if not data:
                break
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"payload_too_large" in answer
    assert sent < total // 2, sent  # the ingress answered without the rest of the body


def test_overload_is_shed_with_503_at_once_and_leaves_breakers_closed(platform: Platform
                                                                      ) -> None:
    """A slow version with room for 4 calls and 8 queued (timeout 2 s) gets 100 at once.

    100, not more: the storm must fit the ingress's own room (256) with CPU to spare, or on a
    starved two-core machine every request's 2 s go by before the ingress asks the version
    (504 "the time went before ...") and the version's queue is never seen full."""
    import asyncio

    model = "overloadmodel"
    register_model(platform.client, model, platform.tmp, seed=6, model_type=FAULTY)
    platform.deploy(model, 1)
    frame = generate_fraud(1, seed=7)
    body = {"modelName": model,
            "columns": {c: frame[c].tolist() for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}}

    async def storm(n: int) -> list[tuple[int, float, httpx.Headers, Any]]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=platform.url, timeout=120,
                                     limits=limits) as client:
            async def one() -> tuple[int, float, httpx.Headers, Any]:
                start = time.monotonic()
                reply = await client.post("/v1/predict/batch", json=body)
                json_body = reply.headers.get("content-type") == "application/json"
                return (reply.status_code, time.monotonic() - start, reply.headers,
                        reply.json() if json_body else reply.text)
            return await asyncio.gather(*(one() for _ in range(n)))

    try:
        set_fault("slow")  # 0.25 s per batch: about 16 answers a second
        replies = asyncio.run(storm(100))
    finally:
        set_fault(None)
    statuses = Counter(status for status, *_ in replies)
    # 408: Serve's proxy capped a request's age (ingress.proxy_timeout_s), never a wait
    # in an unbounded queue.
    assert set(statuses) <= {200, 408, 503, 504}, statuses
    shed = [(h, b) for status, _, h, b in replies if status == 503]
    # Shed by the ingress (the version's queue is full) or, past the ingress's own queue,
    # by Serve's proxy (a plain-text body): at once, with Retry-After, never a breaker.
    assert any(isinstance(b, dict) and b["code"] == "overloaded" for _, b in shed), statuses
    assert all(int(h["retry-after"]) >= 1 and (not isinstance(b, dict)
                                               or b["code"] == "overloaded")
               for h, b in shed), statuses
    listed = {m["name"]: m for m in platform.http.get("/v1/models").json()["models"]}
    assert [v["breaker"] for v in listed[model]["versions"]] == ["closed"]
    assert all(s.state.value == "closed" for k, s in platform.client.serving.breakers().items()
               if f"/{model}/" in k)
    wait_for(lambda: platform.predict(model).status_code == 200, timeout=30, interval=0.5)


def test_serves_proxy_caps_a_requests_age_queueing_included(platform: Platform) -> None:
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    http = ray.get(controller.get_http_config.remote(), timeout=60)
    assert http.request_timeout_s == 30.0  # ingress.proxy_timeout_s: above every timeout_s
