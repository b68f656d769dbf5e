"""The Open Inference Protocol (KServe V2) payloads, and their numpy codec.

A request carries named input tensors, each with a shape, a V2 datatype and its data
flattened in row-major order, either inline as JSON (``data``) or, with the binary
tensor data extension (:mod:`mlray.serving.v2_binary`), as raw bytes after the JSON.
:func:`read_infer_request` checks the framing (Content-Type, binary header) and the JSON;
:func:`decode_inputs` checks the tensors against the model's input schema (names,
datatypes, shapes, each value's JSON type, the float32 range the models compute in) and
returns numpy arrays. Every problem is an :class:`InvalidInput` naming the field.

Rules (strict, as Triton's): an integer datatype takes JSON integers only (no ``1.5``,
``true`` or ``"3"``), FP datatypes take numbers, BOOL takes ``true``/``false``, BYTES
takes strings (never ``123`` or ``null``); NaN, infinities and magnitudes beyond float32
(about 3.4e38) are refused. A version in the URL is a plain positive integer (``1``,
never ``01``, ``+1`` or ``1.0``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from mlray.errors import InvalidInput, PredictionFailed
from mlray.registry.types import ModelVersion, TensorSpec
from mlray.serving.api_models import Text
from mlray.serving.inputs import FLOAT32_MAX, first_out_of_range
from mlray.serving.v2_binary import (
    HEADER_LENGTH,
    WIRE_DTYPES,
    binary_body,
    split_body,
    tensor_from_bytes,
    tensor_to_bytes,
)

__all__ = [
    "EXTENSIONS",
    "PIN_HEADER",
    "SCHEMA_TO_V2",
    "V2_TO_NUMPY",
    "VERSION_PATTERN",
    "InferInput",
    "InferRequest",
    "check_finite",
    "decode_inputs",
    "encode_infer_response",
    "merge_pin",
    "model_metadata",
    "output_spec",
    "parse_version",
    "read_infer_request",
    "select_outputs",
    "server_metadata",
]

#: The protocol extensions this server implements (``GET /v2`` lists them).
EXTENSIONS = ("binary_tensor_data",)
PIN_HEADER = "x-mlray-version"

V2Datatype = Literal["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                     "FP64", "BYTES"]
V2_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_, "UINT8": np.uint8, "INT8": np.int8, "INT16": np.int16,
    "INT32": np.int32, "INT64": np.int64, "FP16": np.float16, "FP32": np.float32,
    "FP64": np.float64, "BYTES": np.object_,
}
_NUMPY_TO_V2 = {np.dtype(v).str: k for k, v in V2_TO_NUMPY.items() if k != "BYTES"}
#: A schema dtype as the V2 datatype its metadata announces.
SCHEMA_TO_V2 = {"float32": "FP32", "float64": "FP64", "int32": "INT32", "int64": "INT64",
                "bool": "BOOL", "string": "BYTES", "bytes": "BYTES"}
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
# The JSON types each datatype takes (exact types: a bool is not an int here).
_JSON_TYPES: dict[str, tuple[set[type], str]] = {
    "BOOL": ({bool}, "true or false"), "BYTES": ({str}, "strings"),
    **{t: ({int}, "integers") for t in ("UINT8", "INT8", "INT16", "INT32", "INT64")},
    **{t: ({int, float}, "numbers") for t in ("FP16", "FP32", "FP64")},
}
_FLOAT_LIMIT = {"FP16": float(np.finfo(np.float16).max), "FP32": FLOAT32_MAX,
                "FP64": FLOAT32_MAX}
#: A version path segment: a plain positive integer (the OpenAPI pattern too).
VERSION_PATTERN = r"^[1-9][0-9]{0,17}$"
_VERSION = re.compile(VERSION_PATTERN)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Parameters(BaseModel):
    """Free-form V2 parameters: the keys mlray reads are typed, others are ignored, and
    those of extensions mlray does not implement are refused. ``_REFUSED`` maps a key
    prefix to why; a key under it is refused when present, except where 0 or false means
    "off" in the protocol (``_OFF_ALLOWED``)."""

    model_config = ConfigDict(extra="allow", strict=True)
    _REFUSED: ClassVar[dict[str, str]] = {
        "shared_memory": "the shared-memory extension is not supported; send the data as "
                         "JSON or binary"}
    _OFF_ALLOWED: ClassVar[frozenset[str]] = frozenset({"classification", "sequence_id"})

    @model_validator(mode="after")
    def _no_unsupported_extension(self) -> _Parameters:
        for key, value in (self.model_extra or {}).items():
            for prefix, why in self._REFUSED.items():
                if key.startswith(prefix) and (value or prefix not in self._OFF_ALLOWED):
                    raise ValueError(why)
        return self


class InputParameters(_Parameters):
    """An input's parameters: ``binary_data_size`` when its data follows as bytes."""

    binary_data_size: int | None = Field(None, ge=0)


class OutputParameters(_Parameters):
    """A requested output's parameters: ``binary_data`` asks for it as bytes."""

    binary_data: bool | None = None
    _REFUSED: ClassVar[dict[str, str]] = {
        **_Parameters._REFUSED,
        "classification": "the classification extension is not supported"}


class RequestParameters(_Parameters):
    """A request's parameters: ``binary_data_output`` makes every output binary."""

    binary_data_output: bool = False
    _REFUSED: ClassVar[dict[str, str]] = {
        **_Parameters._REFUSED,
        "sequence_id": "the sequence extension is not supported (stateless models)"}


class InferInput(_Strict):
    """One input tensor of a V2 request: ``data`` inline, or ``binary_data_size`` bytes
    after the JSON header."""

    name: str = Field(min_length=1, max_length=256)
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: V2Datatype
    data: list[Any] | None = None
    parameters: InputParameters | None = None
    _raw: memoryview | None = PrivateAttr(None)

    @property
    def binary_size(self) -> int | None:
        """The byte count of its binary data, when sent as binary."""
        return self.parameters.binary_data_size if self.parameters else None

    @model_validator(mode="after")
    def _one_source(self) -> InferInput:
        if (self.data is None) == (self.binary_size is None):
            raise ValueError("give data, or parameters.binary_data_size with the bytes after "
                             "the JSON (binary extension), not both or neither")
        return self


class RequestedOutput(_Strict):
    """An output the caller asks for, by name."""

    name: str = Field(min_length=1, max_length=256)
    parameters: OutputParameters | None = None


class InferRequest(_Strict):
    """``POST /v2/models/{m}[/versions/{v}]/infer``."""

    id: Text | None = Field(None, max_length=256)
    inputs: list[InferInput] = Field(min_length=1, max_length=64)
    outputs: list[RequestedOutput] | None = Field(None, max_length=64)
    parameters: RequestParameters | None = None


# -- framing --------------------------------------------------------------------------------

def _media_type(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("content-type")
    return raw.split(";", 1)[0].strip().lower() if raw is not None else None


def read_infer_request(body: bytes, headers: Mapping[str, str]) -> InferRequest:
    """Parse an infer request: JSON, or JSON plus binary tensors when the
    ``Inference-Header-Content-Length`` header is present.

    Raises:
        InvalidInput: a Content-Type that is not the form's, a compressed body, a bad
            header length, JSON that does not validate, binary sizes that do not add up.
        pydantic.ValidationError: the JSON does not match :class:`InferRequest`.
    """
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise InvalidInput(f"Content-Encoding {encoding!r} is not supported; send the body "
                           "uncompressed", field="content-encoding")
    media = _media_type(headers)
    length = headers.get(HEADER_LENGTH)
    if length is None:
        if media not in (None, "application/json"):
            raise InvalidInput(f"Content-Type {media!r}: a JSON request is application/json "
                               "(binary tensors also need the Inference-Header-Content-Length"
                               " header)", field="content-type")
        request = InferRequest.model_validate_json(body)
        for i, item in enumerate(request.inputs):
            if item.binary_size is not None:
                raise InvalidInput(f"inputs[{i}] ({item.name}) has binary_data_size, but the "
                                   "request lacks the Inference-Header-Content-Length header",
                                   field=HEADER_LENGTH)
        return request
    if media not in (None, "application/octet-stream"):
        raise InvalidInput(f"Content-Type {media!r}: a binary request (with "
                           "Inference-Header-Content-Length) is application/octet-stream",
                           field="content-type")
    header, tail = split_body(body, length)
    request = InferRequest.model_validate_json(header)
    at = 0
    for i, item in enumerate(request.inputs):
        size = item.binary_size
        if size is None:
            continue
        if at + size > len(tail):
            raise InvalidInput(f"inputs[{i}] ({item.name}): binary_data_size {size} runs past "
                               f"the {len(tail)} bytes after the JSON",
                               field=f"inputs[{i}].parameters.binary_data_size")
        item._raw = tail[at:at + size]
        at += size
    if at != len(tail):
        raise InvalidInput(f"{len(tail) - at} bytes after the JSON belong to no input (the "
                           f"binary_data_size parameters add up to {at})", field=HEADER_LENGTH)
    return request


def parse_version(raw: str) -> int:
    """A version path segment: a plain positive integer, else :class:`InvalidInput`."""
    if not _VERSION.fullmatch(raw):
        raise InvalidInput(f"version must be a positive integer like 1 or 12 (no sign, "
                           f"leading zero or decimals), got {raw[:40]!r}", field="version")
    return int(raw)


def merge_pin(header: int | None, explicit: int | None) -> int | None:
    """The version a request pins: the ``x-mlray-version`` header and the one the request
    names itself (URL ``/versions/{v}`` or ``modelVersion``) must agree when both are
    given."""
    if header is not None and explicit is not None and header != explicit:
        raise InvalidInput(f"header {PIN_HEADER}: {header} contradicts version {explicit} "
                           "named by the request (URL or modelVersion); give one, or the "
                           "same", field=PIN_HEADER)
    return explicit if explicit is not None else header


# -- decoding -------------------------------------------------------------------------------

def _flat_json(item: InferInput, where: str, field: str) -> list[Any]:
    data: list[Any] = item.data or []
    if data and isinstance(data[0], list):  # nested lists are allowed by the protocol
        try:
            data = np.asarray(data, dtype=object).reshape(-1).tolist()
        except ValueError:
            raise InvalidInput(f"{where}: nested data is ragged", field=field) from None
    allowed, want = _JSON_TYPES[item.datatype]
    if not set(map(type, data)) <= allowed:
        i, value = next((i, v) for i, v in enumerate(data) if type(v) not in allowed)
        raise InvalidInput(f"{where}: data[{i}] is {_json_name(value)} {value!r:.40}; "
                           f"{item.datatype} takes {want}", field=field)
    return data


def _json_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _check_floats(array: np.ndarray, datatype: str, where: str, field: str) -> None:
    bad = first_out_of_range(array, _FLOAT_LIMIT[datatype])
    if bad is not None:
        value = float(array.reshape(-1)[bad])
        reason = ("is NaN or infinite" if not math.isfinite(value) else
                  f"lies outside the {'FP16' if datatype == 'FP16' else 'float32'} range "
                  f"the model computes in (|x| <= {_FLOAT_LIMIT[datatype]:.4g})")
        raise InvalidInput(f"{where}: value {bad} ({value!r}) {reason}", field=field)


def _decode_one(item: InferInput, where: str, field: str, text: bool) -> np.ndarray:
    if any(d < 0 for d in item.shape):
        raise InvalidInput(f"{where}.shape {item.shape} has a negative size", field=field)
    expected = math.prod(item.shape)
    if item._raw is not None:
        array = tensor_from_bytes(item.datatype, expected, item._raw, where, field, text=text)
    else:
        data = _flat_json(item, where, field)
        if len(data) != expected:
            raise InvalidInput(f"{where}: shape {item.shape} needs {expected} values, got "
                               f"{len(data)}", field=field)
        wire = np.float64 if item.datatype.startswith("FP") else V2_TO_NUMPY[item.datatype]
        try:
            array = np.asarray(data, dtype=wire)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInput(f"{where}: data is not {item.datatype}: {exc}",
                               field=field) from None
    if item.datatype.startswith("FP"):
        _check_floats(array, item.datatype, where, field)
        array = array.astype(WIRE_DTYPES[item.datatype].newbyteorder("="), copy=False)
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
        array = _decode_one(item, where, spec.name, text=spec.dtype == "string")
        if batch is not None and array.shape[0] != batch:
            raise InvalidInput(f"{where}: {array.shape[0]} rows where other inputs have "
                               f"{batch}", field=spec.name)
        batch = array.shape[0]
        numpy_dtype = {"string": np.object_, "bytes": np.object_}.get(spec.dtype, spec.dtype)
        arrays[spec.name] = array.astype(numpy_dtype, copy=False)
    return arrays


# -- outputs --------------------------------------------------------------------------------

def select_outputs(request: InferRequest, available: Sequence[str]) -> list[tuple[str, bool]]:
    """The outputs to answer, each with whether it goes as binary: all of ``available``
    when none are asked for.

    Raises:
        InvalidInput: an output the model does not have, or one asked twice.
    """
    default = request.parameters.binary_data_output if request.parameters else False
    if request.outputs is None:
        return [(name, default) for name in available]
    chosen: list[tuple[str, bool]] = []
    for i, out in enumerate(request.outputs):
        if out.name not in available:
            raise InvalidInput(f"unknown output {out.name!r}; the model gives "
                               f"{list(available)}", field=f"outputs[{i}].name")
        if any(out.name == name for name, _ in chosen):
            raise InvalidInput(f"output {out.name!r} is asked twice", field=f"outputs[{i}].name")
        asked = out.parameters.binary_data if out.parameters else None
        chosen.append((out.name, default if asked is None else asked))
    return chosen


def check_finite(out: np.ndarray, model: str, version: int) -> None:
    """Refuse predictions that are NaN or infinite (never answered as null or 0)."""
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        row = int(np.argmax(~np.isfinite(out.reshape(len(out), -1)).all(axis=1)))
        raise PredictionFailed(f"{model} v{version} gave a non-finite prediction for row "
                               f"{row} (inputs beyond what the model can compute?)")


def encode_infer_response(model: str, version: int, request_id: str,
                          outputs: Sequence[tuple[str, bool, np.ndarray]]
                          ) -> tuple[bytes, str, dict[str, str]]:
    """The response body, its media type and extra headers: JSON, or the JSON header and
    the binary outputs when any output goes as binary."""
    described, blobs = [], []
    for name, binary, array in outputs:
        datatype = _NUMPY_TO_V2.get(array.dtype.newbyteorder("=").str, "BYTES")
        tensor: dict[str, Any] = {"name": name, "shape": list(array.shape),
                                  "datatype": datatype}
        if binary:
            blob = tensor_to_bytes(datatype, array)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = array.reshape(-1)
            tensor["data"] = flat if flat.dtype.kind in "biuf" else flat.tolist()
        described.append(tensor)
    header = orjson.dumps({"model_name": model, "model_version": str(version),
                           "id": request_id, "outputs": described},
                          option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, "application/json", {}
    body, headers = binary_body(header, blobs)
    return body, "application/octet-stream", headers


# -- metadata -------------------------------------------------------------------------------

def server_metadata() -> dict[str, Any]:
    """``GET /v2``: the server's name, version and supported extensions."""
    from mlray import __version__

    return {"name": "mlray", "version": __version__, "extensions": list(EXTENSIONS)}


def output_spec(mv: ModelVersion) -> TensorSpec:
    """The one output a version answers (its schema's first, else ``prediction``)."""
    return mv.output_schema[0] if mv.output_schema else TensorSpec(name="prediction",
                                                                   dtype="float32")


def model_metadata(model: str, versions: Sequence[int], mv: ModelVersion) -> dict[str, Any]:
    """``GET /v2/models/{m}[/versions/{v}]``: the version's inputs and its output."""
    outputs = [output_spec(mv)]
    return {"name": model, "versions": [str(v) for v in sorted(versions)],
            "platform": "mlray-torch",
            "inputs": [{"name": s.name, "datatype": SCHEMA_TO_V2[s.dtype], "shape": s.shape}
                       for s in mv.input_schema],
            "outputs": [{"name": s.name, "datatype": SCHEMA_TO_V2[s.dtype], "shape": s.shape}
                        for s in outputs]}
