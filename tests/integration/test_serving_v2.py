"""The Open Inference Protocol over real HTTP (issue 11, items 12, 13, 15, 16, 18): a client
nobody here wrote (tritonclient) for server metadata and binary tensors, and the 400s
that strict typing owes, on the session platform (tests/integration/conftest.py)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import numpy as np
import pytest

from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from tests.integration.platform import Platform

pytestmark = pytest.mark.slow
FEATURES = [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]


@pytest.fixture(scope="module")
def served(platform: Platform) -> str:
    """One deployed fraud model for the module."""
    model = platform.model()
    platform.deploy(model, 1)
    return model


def _columns(rows: int) -> dict[str, list[Any]]:
    frame = generate_fraud(rows, seed=5)
    return {c: frame[c].tolist() for c in FEATURES}


def _v2_inputs(columns: dict[str, list[Any]], **override: Any) -> list[dict[str, Any]]:
    rows = len(columns["amount"])
    inputs = [{"name": c, "shape": [rows], "datatype": "FP64" if c in FRAUD_NUMERIC
               else "BYTES", "data": columns[c]} for c in FEATURES]
    for item in inputs:
        item.update(override.get(item["name"], {}))
    return inputs


def test_tritonclient_reads_server_metadata_and_infers_in_binary(platform: Platform,
                                                                  served: str) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=platform.url.removeprefix("http://"))
    meta = client.get_server_metadata()
    assert meta["name"] == "mlray" and meta["version"]
    assert meta["extensions"] == ["binary_tensor_data"]

    columns = _columns(64)
    inputs = []
    for c in FEATURES:
        numeric = c in FRAUD_NUMERIC
        array = (np.asarray(columns[c], dtype=np.float64) if numeric
                 else np.array([s.encode() for s in columns[c]], dtype=object))
        item = triton.InferInput(c, [64], "FP64" if numeric else "BYTES")
        item.set_data_from_numpy(array)  # tritonclient's default: binary
        inputs.append(item)
    direct = platform.http.post("/v1/predict/batch", json={"modelName": served,
                                                           "columns": columns})
    assert direct.status_code == 200, direct.text
    expected = np.asarray(direct.json()["probabilities"], dtype=np.float32)

    result = client.infer(served, inputs)  # no outputs named: binary_data_output
    got = result.as_numpy("probability")
    assert result.get_output("probability")["parameters"]["binary_data_size"] == 64 * 4
    assert got.dtype == np.float32 and got.shape == (64,)
    assert np.allclose(got, expected, rtol=1e-5)
    pinned = client.infer(served, inputs, model_version="1", outputs=[
        triton.InferRequestedOutput("probability")])
    assert np.allclose(pinned.as_numpy("probability"), expected, rtol=1e-5)
    as_json = client.infer(served, inputs, outputs=[
        triton.InferRequestedOutput("probability", binary_data=False)])
    assert as_json.get_output("probability")["data"]
    assert np.allclose(as_json.as_numpy("probability"), expected, rtol=1e-5)

    with pytest.raises(triton.InferenceServerException) as err:
        client.infer(served, inputs, outputs=[triton.InferRequestedOutput("score")])
    assert err.value.status() == "400" and "unknown output 'score'" in err.value.message()
    inputs[0].set_data_from_numpy(np.full(64, 1.7e308))
    with pytest.raises(triton.InferenceServerException) as err:
        client.infer(served, inputs)
    assert err.value.status() == "400" and "float32 range" in err.value.message()


def _expect_400(reply: httpx.Response, field: str) -> None:
    assert reply.status_code == 400, (reply.request.method, reply.request.url, reply.text)
    body = reply.json()
    assert body["code"] == "invalid_input" and body.get("field") == field, body


def test_strict_v2_typing_names_the_field(platform: Platform, served: str) -> None:
    post, columns = platform.http.post, _columns(2)
    infer = f"/v2/models/{served}/infer"
    good = {"inputs": _v2_inputs(columns)}
    assert post(infer, json=good).status_code == 200
    for value in (1.5, True, "3"):
        body = {"inputs": _v2_inputs(columns, hour={"datatype": "INT64", "data": [3, value]})}
        _expect_400(post(infer, json=body), "hour")
    for value in (123, None):
        body = {"inputs": _v2_inputs(columns, device={"data": ["mobile", value]})}
        _expect_400(post(infer, json=body), "device")
    _expect_400(post(infer, json={**good, "outputs": [{"name": "score"}]}), "outputs[0].name")
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        reply = post(infer, content=httpx.Request("POST", "/", json=good).content,
                     headers={"content-type": content_type})
        _expect_400(reply, "content-type")
    for version in ("1.0", "01", "+1"):
        _expect_400(post(f"/v2/models/{served}/versions/{version}/infer", json=good),
                    "version")
        _expect_400(platform.http.get(f"/v2/models/{served}/versions/{version}"), "version")
        _expect_400(platform.http.get(f"/v2/models/{served}/versions/{version}/ready"),
                    "version")
    assert post(f"/v2/models/{served}/versions/1/infer", json=good).status_code == 200
    # An explicit version in the URL and a different pin header contradict each other.
    _expect_400(post(f"/v2/models/{served}/versions/1/infer", json=good,
                     headers={"x-mlray-version": "2"}), "x-mlray-version")
    same = post(f"/v2/models/{served}/versions/1/infer", json=good,
                headers={"x-mlray-version": "1"})
    assert same.status_code == 200 and same.headers["x-mlray-model-version"] == "1"


def test_huge_and_non_finite_inputs_are_refused_everywhere(platform: Platform,
                                                           served: str) -> None:
    post, columns = platform.http.post, _columns(2)
    row = {c: columns[c][0] for c in FEATURES}
    for value in (1.7e308, 1e39):
        _expect_400(post("/v1/predict", json={"modelName": served,
                                              "features": {**row, "amount": value}}), "amount")
        _expect_400(post("/v1/predict/batch", json={
            "modelName": served, "columns": {**columns, "amount": [1.0, value]}}), "amount")
        _expect_400(post(f"/v2/models/{served}/infer", json={"inputs": _v2_inputs(
            columns, amount={"data": [1.0, value]})}), "amount")
    # A NaN literal is refused on /v1 as on V2 (null is how /v1 says "missing").
    marked = json.dumps({"modelName": served, "features": {**row, "amount": "@nan@"}})
    for literal in ("NaN", "Infinity"):
        body = marked.replace('"@nan@"', literal).encode()
        reply = post("/v1/predict", content=body, headers={"content-type": "application/json"})
        _expect_400(reply, "amount")
    nulls = post("/v1/predict", json={"modelName": served, "features": {**row, "amount": None}})
    assert nulls.status_code == 200, nulls.text
    # At the edge of float32 the model answers, with finite numbers or a clear error.
    edge = post("/v1/predict/batch", json={"modelName": served, "columns": {
        **columns, **{c: [3.4e38, -3.4e38] for c in FRAUD_NUMERIC}}})
    if edge.status_code == 200:
        assert all(p is not None and math.isfinite(p) for p in edge.json()["probabilities"])
    else:
        assert (edge.status_code, edge.json()["code"]) == (500, "prediction_failed"), edge.text


def test_http_details_405_feedback_and_openapi(platform: Platform, served: str) -> None:
    reply = platform.http.get(f"/v2/models/{served}/infer")
    assert reply.status_code == 405 and reply.headers["allow"] == "POST", reply.headers
    reply = platform.http.delete("/v2/health/live")
    assert reply.status_code == 405 and "GET" in reply.headers["allow"]
    bad = platform.http.post("/v1/feedback", json={"feedback": [
        {"requestId": "r", "label": 1, "row": False}]})
    _expect_400(bad, "feedback.0.row")
    spec = platform.http.get("/openapi.json").json()
    codes = {code for operations in spec["paths"].values()
             for operation in operations.values() for code in operation["responses"]}
    assert "422" not in codes and "400" in codes
    assert "/v2" in spec["paths"]
    assert platform.http.get("/v2").json()["extensions"] == ["binary_tensor_data"]
