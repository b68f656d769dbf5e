"""The Open Inference Protocol (KServe V2) payloads, and their numpy codec.

A request carries named input tensors, each with a shape, a V2 datatype and its data
flattened in row-major order. :func:`decode_inputs` checks them against the model's
input schema (names, dtypes, shapes) and returns numpy arrays without per-row Python
work; every problem is an :class:`InvalidInput` naming the input and what is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlray.errors import InvalidInput
from mlray.registry.types import TensorSpec

__all__ = [
    "V2_TO_NUMPY",
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "decode_inputs",
    "encode_output",
]

V2Datatype = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                     "FP64", "BYTES"]
V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
    "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
    "FP64": np.float64, "BYTES": np.object_,
}
_NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
# Which V2 datatypes may feed a schema dtype (widening only, never lossy for floats).
_ACCEPTS: dict[str, set[str]] = {
    "float32": {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8"},
    "float64": {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8"},
    "int32": {"INT8", "INT16", "INT32", "UINT8"},
    "int64": {"INT8", "INT16", "INT32", "INT64", "UINT8"},
    "bool": {"BOOL"},
    "string": {"BYTES"},
    "bytes": {"BYTES"},
}


class InferInput(BaseModel):
    """One input tensor of a V2 request."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=256)
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: V2Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """``POST /v2/models/{m}[/versions/{v}]/infer``."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=256)
    inputs: list[InferInput] = Field(min_length=1, max_length=64)
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    """One output tensor of a V2 response."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    """The V2 response: which model and version answered, and the outputs."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


def _decode_one(item: InferInput, where: str, field: str) -> np.ndarray:
    if any(d < 0 for d in item.shape):
        raise InvalidInput(f"{where}.shape {item.shape} has a negative size", field=field)
    expected = int(np.prod(item.shape))
    data: Any = item.data
    if data and isinstance(data[0], list):  # nested lists are allowed by the protocol
        data = np.asarray(data, dtype=object).reshape(-1).tolist()
    if len(data) != expected:
        raise InvalidInput(f"{where}: shape {item.shape} needs {expected} values, got "
                           f"{len(data)}", field=field)
    try:
        array = np.asarray(data, dtype=V2_TO_NUMPY[item.datatype])
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(f"{where}: data is not {item.datatype}: {exc}", field=field) from None
    if item.datatype.startswith("FP") and not np.isfinite(array).all():
        raise InvalidInput(f"{where}: NaN or infinite values", field=field)
    return array.reshape(item.shape)


def decode_inputs(request: InferRequest, schema: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The request's tensors as numpy arrays, checked against ``schema``.

    Each schema input must be present exactly once with an accepted datatype and a
    shape whose fixed dimensions (not -1) match; the batch dimensions must agree.

    Raises:
        InvalidInput: naming the input (``inputs[i]`` or its name) and the problem.
    """
    by_name: dict[str, tuple[int, InferInput]] = {}
    for i, item in enumerate(request.inputs):
        if item.name in by_name:
            raise InvalidInput(f"input {item.name!r} is given twice", field=f"inputs[{i}].name")
        by_name[item.name] = (i, item)
    known = {spec.name for spec in schema}
    unknown = sorted(set(by_name) - known)
    if unknown:
        raise InvalidInput(f"unknown input(s) {unknown}; the model takes {sorted(known)}",
                           field="inputs")
    arrays: dict[str, np.ndarray] = {}
    batch: int | None = None
    for spec in schema:
        if spec.name not in by_name:
            raise InvalidInput(f"missing input {spec.name!r} ({spec.dtype}, shape "
                               f"{spec.shape})", field=spec.name)
        i, item = by_name[spec.name]
        where = f"inputs[{i}] ({spec.name})"
        if item.datatype not in _ACCEPTS[spec.dtype]:
            raise InvalidInput(f"{where}: datatype {item.datatype} does not fit {spec.dtype}",
                               field=spec.name)
        if len(item.shape) != len(spec.shape) or any(
                want not in (-1, got) for want, got in zip(spec.shape, item.shape, strict=True)):
            raise InvalidInput(f"{where}: shape {item.shape} does not fit {spec.shape}",
                               field=spec.name)
        array = _decode_one(item, where, spec.name)
        if batch is not None and array.shape[0] != batch:
            raise InvalidInput(f"{where}: {array.shape[0]} rows where other inputs have "
                               f"{batch}", field=spec.name)
        batch = array.shape[0]
        numpy_dtype = {"string": np.object_, "bytes": np.object_}.get(spec.dtype, spec.dtype)
        arrays[spec.name] = array.astype(numpy_dtype, copy=False)
    return arrays


def encode_output(name: str, array: np.ndarray) -> InferOutput:
    """A numpy result as a V2 output tensor."""
    datatype = _NUMPY_TO_V2.get(array.dtype.str, "BYTES")
    return InferOutput(name=name, shape=list(array.shape), datatype=datatype,
                       data=array.reshape(-1).tolist())
