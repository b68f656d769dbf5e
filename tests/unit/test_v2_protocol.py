"""The Open Inference Protocol (V2) codec, without Ray or HTTP."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlray.errors import InvalidInput
from mlray.registry.types import TensorSpec
from mlray.serving.protocol import InferRequest, decode_inputs, encode_infer_response

SCHEMA = [TensorSpec(name="x", dtype="float32", shape=[-1, 3]),
          TensorSpec(name="country", dtype="string", shape=[-1])]


def _request(*inputs: dict[str, Any]) -> InferRequest:
    return InferRequest.model_validate({"id": "r1", "inputs": list(inputs)})


X = {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}
C = {"name": "country", "shape": [2], "datatype": "BYTES", "data": ["US", "NG"]}


def test_round_trip_to_numpy() -> None:
    arrays = decode_inputs(_request(X, C), SCHEMA)
    assert arrays["x"].dtype == np.float32 and arrays["x"].shape == (2, 3)
    assert arrays["x"][1, 2] == 6 and list(arrays["country"]) == ["US", "NG"]
    nested = {**X, "data": [[1, 2, 3], [4, 5, 6]]}
    assert (decode_inputs(_request(nested, C), SCHEMA)["x"] == arrays["x"]).all()
    widened = {**X, "datatype": "INT64"}
    assert decode_inputs(_request(widened, C), SCHEMA)["x"].dtype == np.float32
    body, media, _ = encode_infer_response(
        "m", 1, "r", [("probability", False, np.array([0.25, 0.75], dtype=np.float32))])
    out = json.loads(body)["outputs"][0]
    assert media == "application/json"
    assert (out["datatype"], out["shape"], out["data"]) == ("FP32", [2], [0.25, 0.75])


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ([X], "country", "missing input 'country'"),
        ([X, C, {**C, "name": "extra"}], "inputs", "unknown input"),
        ([X, C, X], "inputs[2].name", "given twice"),
        ([{**X, "shape": [2, 4], "data": list(range(8))}, C], "x", "does not fit"),
        ([{**X, "data": [1, 2, 3]}, C], "x", "needs 6 values, got 3"),
        ([{**X, "datatype": "BYTES"}, C], "x", "BYTES does not fit float32"),
        ([{**X, "data": ["a"] * 6}, C], "x", r"data\[0\] is a string 'a'; FP32 takes numbers"),
        ([{**X, "data": [1, 2, 3, 4, 5, float("nan")]}, C], "x", "NaN"),
        ([X, {**C, "shape": [3], "data": ["US", "NG", "FR"]}], "country", "3 rows where"),
        ([{**X, "shape": [-2, 3]}, C], "x", "negative"),
    ],
)
def test_bad_tensors_name_the_input(inputs: list[dict[str, Any]], field: str,
                                    message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as err:
        decode_inputs(_request(*inputs), SCHEMA)
    assert err.value.field == field


def test_malformed_requests_fail_validation() -> None:
    for body in ({"inputs": []}, {"inputs": [{**X, "datatype": "FP128"}]},
                 {"inputs": [X], "surprise": 1}):
        with pytest.raises(ValidationError):
            InferRequest.model_validate(body)


# -- strict typing (issue 11, item 16) ------------------------------------------------------

INTS = [TensorSpec(name="n", dtype="int64", shape=[-1])]
TEXT = [TensorSpec(name="s", dtype="string", shape=[-1])]
FLAGS = [TensorSpec(name="b", dtype="bool", shape=[-1])]


@pytest.mark.parametrize(
    ("schema", "datatype", "value", "message"),
    [
        (INTS, "INT64", 1.5, r"data\[1\] is a number 1.5; INT64 takes integers"),
        (INTS, "INT64", True, "is a boolean True; INT64 takes integers"),
        (INTS, "INT64", "3", "is a string '3'; INT64 takes integers"),
        (INTS, "INT64", 1.0, "is a number 1.0; INT64 takes integers"),
        (INTS, "INT64", None, "is null None; INT64 takes integers"),
        (INTS, "INT32", 2**40, "data is not INT32"),
        (TEXT, "BYTES", 123, "is an integer 123; BYTES takes strings"),
        (TEXT, "BYTES", None, "is null None; BYTES takes strings"),
        (FLAGS, "BOOL", 1, "is an integer 1; BOOL takes true or false"),
        (SCHEMA[:1], "FP32", "3", "is a string '3'; FP32 takes numbers"),
        (SCHEMA[:1], "FP64", False, "is a boolean False; FP64 takes numbers"),
    ],
)
def test_json_data_must_have_the_datatypes_json_type(schema: list[TensorSpec], datatype: str,
                                                      value: Any, message: str) -> None:
    spec = schema[0]
    good = {"INT64": 2, "INT32": 2, "BYTES": "a", "BOOL": True}.get(datatype, 2.0)
    shape = [1, 3] if spec.shape == [-1, 3] else [3]
    tensor = {"name": spec.name, "shape": shape, "datatype": datatype,
              "data": [good, value, good]}
    with pytest.raises(InvalidInput, match=message) as err:
        decode_inputs(_request(tensor), schema)
    assert err.value.field == spec.name


@pytest.mark.parametrize(
    ("datatype", "value", "message"),
    [
        ("FP64", 1.7e308, "outside the float32 range"),
        ("FP64", 1e39, "outside the float32 range"),
        ("FP32", -1e39, "outside the float32 range"),
        ("FP64", 10**400, "data is not FP64"),
        ("FP64", float("inf"), "NaN or infinite"),
        ("FP16", 70000.0, "outside the FP16 range"),
    ],
)
def test_floats_beyond_float32_are_refused(datatype: str, value: Any, message: str) -> None:
    tensor = {"name": "x", "shape": [1, 3], "datatype": datatype, "data": [1.0, value, 2.0]}
    with pytest.raises(InvalidInput, match=message) as err:
        decode_inputs(_request(tensor, {**C, "shape": [1], "data": ["US"]}), SCHEMA)
    assert err.value.field == "x"
    top = {**X, "shape": [1, 3], "data": [3.4e38, -3.4e38, 0.0], "datatype": "FP64"}
    assert decode_inputs(_request(top, {**C, "shape": [1], "data": ["US"]}),
                         SCHEMA)["x"].max() > 3e38


def test_nan_literals_are_refused_in_json_bodies() -> None:
    from mlray.serving.protocol import read_infer_request

    body = (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", '
            b'"data": [1, NaN, 2]}, {"name": "country", "shape": [1], "datatype": "BYTES", '
            b'"data": ["US"]}]}')
    with pytest.raises(InvalidInput, match=r"value 1 \(nan\) is NaN or infinite") as err:
        decode_inputs(read_infer_request(body, {}), SCHEMA)
    assert err.value.field == "x"


def test_strict_request_fields() -> None:
    for body in ({"inputs": [{**X, "shape": ["2", 3]}]}, {"inputs": [{**X, "shape": [2.0, 3]}]},
                 {"inputs": [{**X, "shape": [True, 3]}]}, {"id": 5, "inputs": [X]},
                 {"inputs": [X], "parameters": {"binary_data_output": "yes"}},
                 {"inputs": [{k: v for k, v in X.items() if k != "data"}]},
                 {"inputs": [{**X, "parameters": {"binary_data_size": 24}}]},
                 {"inputs": [{**X, "parameters": {"shared_memory_region": "r"}}]},
                 {"inputs": [X], "outputs": [{"name": "p", "parameters": {"classification": 2}}]},
                 {"inputs": [X], "outputs": [{"name": "p", "surprise": 1}]},
                 {"inputs": [X], "parameters": {"sequence_id": 7}}):
        with pytest.raises(ValidationError):
            InferRequest.model_validate(body)


def test_requested_outputs_must_exist() -> None:
    from mlray.serving.protocol import select_outputs

    plain = _request(X)
    assert select_outputs(plain, ["probability"]) == [("probability", False)]
    binary = InferRequest.model_validate({"inputs": [X],
                                          "parameters": {"binary_data_output": True}})
    assert select_outputs(binary, ["probability"]) == [("probability", True)]
    asked = InferRequest.model_validate({"inputs": [X], "outputs": [
        {"name": "probability", "parameters": {"binary_data": False}}],
        "parameters": {"binary_data_output": True}})
    assert select_outputs(asked, ["probability"]) == [("probability", False)]
    for outputs, message in (([{"name": "nope"}], "unknown output 'nope'"),
                             ([{"name": "probability"}, {"name": "probability"}], "twice")):
        request = InferRequest.model_validate({"inputs": [X], "outputs": outputs})
        with pytest.raises(InvalidInput, match=message) as err:
            select_outputs(request, ["probability"])
        assert err.value.field == f"outputs[{len(outputs) - 1}].name"


@pytest.mark.parametrize("raw", ["1.0", "01", "+1", "0", "-1", "1e3", " 1", "x",
                                 "1" * 19])
def test_version_paths_are_plain_positive_integers(raw: str) -> None:
    from mlray.serving.protocol import parse_version

    with pytest.raises(InvalidInput, match="positive integer") as err:
        parse_version(raw)
    assert err.value.field == "version"


def test_version_pin_header_must_agree_with_the_url() -> None:
    from mlray.serving.protocol import merge_pin, parse_version

    assert parse_version("12") == 12
    assert merge_pin(None, 2) == 2 and merge_pin(3, None) == 3 and merge_pin(2, 2) == 2
    assert merge_pin(None, None) is None
    with pytest.raises(InvalidInput, match="contradicts version 1") as err:
        merge_pin(2, 1)
    assert err.value.field == "x-mlray-version"


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        ({"content-type": "text/plain"}, "content-type"),
        ({"content-type": "application/x-www-form-urlencoded"}, "content-type"),
        ({"content-type": "application/octet-stream"}, "content-type"),
        ({"content-type": "application/json", "inference-header-content-length": "10"},
         "content-type"),
        ({"content-encoding": "gzip"}, "content-encoding"),
        ({"inference-header-content-length": "abc"}, "inference-header-content-length"),
        ({"inference-header-content-length": "0"}, "inference-header-content-length"),
        ({"inference-header-content-length": "99999"}, "inference-header-content-length"),
    ],
)
def test_framing_is_checked(headers: dict[str, str], field: str) -> None:
    from mlray.serving.protocol import read_infer_request

    body = orjson_dumps({"inputs": [X, C]})
    with pytest.raises(InvalidInput) as err:
        read_infer_request(body, headers)
    assert err.value.field == field


def test_json_content_types_are_accepted() -> None:
    from mlray.serving.protocol import read_infer_request

    body = orjson_dumps({"inputs": [X, C]})
    for headers in ({}, {"content-type": "application/json"},
                    {"content-type": "Application/JSON; charset=utf-8"}):
        assert read_infer_request(body, headers).inputs[0].name == "x"


def orjson_dumps(payload: Any) -> bytes:
    import orjson

    return orjson.dumps(payload)


def test_check_finite_refuses_nan_and_inf_predictions() -> None:
    from mlray.errors import PredictionFailed
    from mlray.serving.protocol import check_finite

    check_finite(np.array([0.1, 0.9], dtype=np.float32), "m", 1)
    for bad in (np.nan, np.inf):
        with pytest.raises(PredictionFailed, match="non-finite prediction for row 1"):
            check_finite(np.array([0.1, bad], dtype=np.float32), "m", 1)


def test_server_metadata_lists_only_supported_extensions() -> None:
    from mlray.serving.protocol import server_metadata

    meta = server_metadata()
    assert meta["name"] == "mlray" and meta["version"]
    assert meta["extensions"] == ["binary_tensor_data"]


# -- the binary tensor data extension (issue 11, item 13) -----------------------------------

def _triton_body(arrays: dict[str, tuple[np.ndarray, str]], binary: bool = True,
                 outputs: list[Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """A request body exactly as tritonclient.http builds it (its default is binary)."""
    import tritonclient.http as triton
    from tritonclient.http._utils import _get_inference_request

    inputs = []
    for name, (array, datatype) in arrays.items():
        item = triton.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    body, size = _get_inference_request(
        inputs=inputs, request_id="r9", outputs=outputs, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None)
    return body, ({} if size is None else {"inference-header-content-length": str(size)})


def test_tritonclients_default_binary_request_decodes() -> None:
    from mlray.serving.protocol import read_infer_request

    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
    country = np.array([b"US", b"NG", "Zürich".encode(), b""], dtype=object)
    body, headers = _triton_body({"x": (x, "FP32"), "country": (country, "BYTES")})
    assert "inference-header-content-length" in headers
    request = read_infer_request(body, headers)
    arrays = decode_inputs(request, SCHEMA)
    assert arrays["x"].dtype == np.float32 and (arrays["x"] == x).all()
    assert list(arrays["country"]) == ["US", "NG", "Zürich", ""]
    assert request.id == "r9" and request.parameters is not None
    assert request.parameters.binary_data_output is True  # no outputs named: all binary
    wide = _triton_body({"x": (x.astype(np.float64), "FP64"), "country": (country, "BYTES")})
    assert (decode_inputs(read_infer_request(*wide), SCHEMA)["x"] == x).all()
    as_json = _triton_body({"x": (x, "FP32"), "country": (country, "BYTES")}, binary=False)
    assert as_json[1] == {}
    assert (decode_inputs(read_infer_request(*as_json), SCHEMA)["x"] == x).all()


def test_binary_numbers_are_read_without_copies() -> None:
    from mlray.serving.protocol import read_infer_request

    x = np.ones((1000, 3), dtype=np.float32)
    country = np.array([b"US"] * 1000, dtype=object)
    body, headers = _triton_body({"x": (x, "FP32"), "country": (country, "BYTES")})
    arrays = decode_inputs(read_infer_request(body, headers), SCHEMA)
    assert np.shares_memory(arrays["x"], np.frombuffer(body, dtype=np.uint8))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.array([[1, 2, np.nan]], dtype=np.float32), "NaN or infinite"),
        (np.array([[1, 2, 1e39]], dtype=np.float64), "outside the float32 range"),
        (np.array([[1, 2, 1.7e308]], dtype=np.float64), "outside the float32 range"),
    ],
)
def test_binary_floats_are_checked_like_json(x: np.ndarray, message: str) -> None:
    from mlray.serving.protocol import read_infer_request

    datatype = "FP32" if x.dtype == np.float32 else "FP64"
    body, headers = _triton_body({"x": (x, datatype),
                                  "country": (np.array([b"US"], dtype=object), "BYTES")})
    with pytest.raises(InvalidInput, match=message) as err:
        decode_inputs(read_infer_request(body, headers), SCHEMA)
    assert err.value.field == "x"


def test_binary_framing_errors_name_the_field() -> None:
    import orjson

    from mlray.serving.protocol import read_infer_request

    header = orjson.dumps({"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32",
         "parameters": {"binary_data_size": 12}},
        {"name": "country", "shape": [1], "datatype": "BYTES",
         "parameters": {"binary_data_size": 6}}]})
    good = np.ones(3, dtype="<f4").tobytes() + (2).to_bytes(4, "little") + b"US"
    length = {"inference-header-content-length": str(len(header))}
    assert decode_inputs(read_infer_request(header + good, length), SCHEMA)["x"].sum() == 3
    cases = [
        (header + good[:-1], "inputs[1].parameters.binary_data_size", "runs past"),
        (header + good + b"!", "inference-header-content-length", "belong to no input"),
    ]
    for body, field, message in cases:
        with pytest.raises(InvalidInput, match=message) as err:
            read_infer_request(body, length)
        assert err.value.field == field
    with pytest.raises(InvalidInput, match="lacks the Inference-Header") as err:
        read_infer_request(header, {})
    assert err.value.field == "inference-header-content-length"
    short = header.replace(b'"binary_data_size":12', b'"binary_data_size":8 ')
    body = short + good[:8] + good[12:]
    with pytest.raises(InvalidInput, match="take 12 bytes") as err:
        decode_inputs(read_infer_request(body, length), SCHEMA)
    assert err.value.field == "x"
    lying = header + np.ones(3, dtype="<f4").tobytes() + (9).to_bytes(4, "little") + b"US"
    with pytest.raises(InvalidInput, match="needs 9 bytes") as err:
        decode_inputs(read_infer_request(lying, length), SCHEMA)
    assert err.value.field == "country"
    latin = header + np.ones(3, dtype="<f4").tobytes() + (2).to_bytes(4, "little") + b"\xfc!"
    with pytest.raises(InvalidInput, match="not UTF-8") as err:
        decode_inputs(read_infer_request(latin, length), SCHEMA)
    assert err.value.field == "country"
    huge = header.replace(b'"shape":[1],', b'"shape":[100000000000],')
    with pytest.raises(InvalidInput, match="cannot fit") as err:
        decode_inputs(read_infer_request(huge + good, {
            "inference-header-content-length": str(len(huge))}),
            [SCHEMA[1], TensorSpec(name="x", dtype="float32", shape=[-1, 3])])
    bools = orjson.dumps({"inputs": [{"name": "b", "shape": [2], "datatype": "BOOL",
                                      "parameters": {"binary_data_size": 2}}]})
    with pytest.raises(InvalidInput, match="BOOL byte 1 is 7"):
        decode_inputs(read_infer_request(bools + b"\x01\x07", {
            "inference-header-content-length": str(len(bools))}), FLAGS)


def test_binary_outputs_parse_in_tritonclient() -> None:
    from tritonclient.http import InferResult

    from mlray.serving.protocol import encode_infer_response

    out = np.array([0.25, 0.5, 0.125], dtype=np.float32)
    body, media, headers = encode_infer_response("m", 2, "r1", [("probability", True, out)])
    assert media == "application/octet-stream"
    result = InferResult.from_response_body(
        body, header_length=int(headers["Inference-Header-Content-Length"]))
    assert result.get_response()["model_version"] == "2"
    got = result.as_numpy("probability")
    assert got.dtype == np.float32 and (got == out).all()
    body, media, headers = encode_infer_response("m", 2, "r1", [("probability", False, out)])
    assert media == "application/json" and headers == {}
    assert (InferResult.from_response_body(body).as_numpy("probability") == out).all()


@pytest.mark.parametrize(("extra", "message"), [
    ({"inputs": [{**X, "parameters": {"shared_memory_region": "r", "shared_memory_offset": 0}}]},
     "shared-memory extension"),
    ({"outputs": [{"name": "probability", "parameters": {"classification": 2}}]},
     "classification extension"),
    ({"parameters": {"sequence_id": 7}}, "sequence extension"),
])
def test_extensions_mlray_lacks_are_refused_by_name(extra: dict[str, Any], message: str
                                                    ) -> None:
    with pytest.raises(ValidationError, match=message):
        InferRequest.model_validate({"inputs": [X, C], **extra})
    # 0 means "off" for classification and sequences: accepted.
    InferRequest.model_validate({"inputs": [X, C], "parameters": {"sequence_id": 0},
                                 "outputs": [{"name": "probability",
                                              "parameters": {"classification": 0}}]})
