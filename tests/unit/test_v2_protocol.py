"""The Open Inference Protocol (V2) codec, without Ray or HTTP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from mlray.errors import InvalidInput
from mlray.registry.types import TensorSpec
from mlray.serving.protocol import InferRequest, decode_inputs, encode_output

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
    out = encode_output("probability", np.array([0.25, 0.75], dtype=np.float32))
    assert (out.datatype, out.shape, out.data) == ("FP32", [2], [0.25, 0.75])


@pytest.mark.parametrize(
    ("inputs", "field", "message"),
    [
        ([X], "country", "missing input 'country'"),
        ([X, C, {**C, "name": "extra"}], "inputs", "unknown input"),
        ([X, C, X], "inputs[2].name", "given twice"),
        ([{**X, "shape": [2, 4], "data": list(range(8))}, C], "x", "does not fit"),
        ([{**X, "data": [1, 2, 3]}, C], "x", "needs 6 values, got 3"),
        ([{**X, "datatype": "BYTES"}, C], "x", "BYTES does not fit float32"),
        ([{**X, "data": ["a"] * 6}, C], "x", "data is not FP32"),
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
