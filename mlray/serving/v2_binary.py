"""The binary tensor data extension of the Open Inference Protocol (KServe V2).

A binary request is a JSON header followed by raw tensor bytes: the
``Inference-Header-Content-Length`` HTTP header gives the JSON's length, and each input
sent as bytes carries ``parameters.binary_data_size`` instead of ``data``; their bytes
follow the JSON in input order. Numbers are little-endian and row-major (one byte per
BOOL); each BYTES element is a 4-byte little-endian length and its bytes. A response
answers the same way for outputs asked as binary (``binary_data`` on an output, or
``binary_data_output`` on the request).

Numeric tensors are read with ``numpy.frombuffer``: no Python object per value.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from mlray.errors import InvalidInput

__all__ = ["HEADER_LENGTH", "WIRE_DTYPES", "binary_body", "split_body", "tensor_from_bytes",
           "tensor_to_bytes"]

HEADER_LENGTH = "inference-header-content-length"
#: V2 datatype → numpy dtype of its bytes on the wire (BYTES is length-prefixed).
WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code) for name, code in {
        "BOOL": "|b1", "UINT8": "|u1", "INT8": "|i1", "INT16": "<i2", "INT32": "<i4",
        "INT64": "<i8", "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}.items()}
_LENGTH = struct.Struct("<I")


def split_body(body: bytes, header_length: str) -> tuple[bytes, memoryview]:
    """The JSON header and the binary tail of a request, by the header's declared length."""
    raw = header_length.strip()
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= len(body):
        raise InvalidInput(f"header Inference-Header-Content-Length must be a byte count "
                           f"from 1 to the body's {len(body)} bytes, got {header_length!r}",
                           field=HEADER_LENGTH)
    cut = int(raw)
    return body[:cut], memoryview(body)[cut:]


def tensor_from_bytes(datatype: str, count: int, raw: memoryview, where: str,
                      field: str, *, text: bool = False) -> np.ndarray:
    """``count`` values of ``datatype`` read from ``raw`` (a flat array, no copy for
    numbers); BYTES elements come back as ``bytes``, or as ``str`` when ``text``.

    Raises:
        InvalidInput: the byte count does not match, a BOOL byte is not 0/1, a BYTES
            element runs past the end or (``text``) is not UTF-8.
    """
    if datatype == "BYTES":
        return _bytes_elements(bytes(raw), count, where, field, text)
    dtype = WIRE_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidInput(f"{where}: {count} {datatype} values take {count * dtype.itemsize}"
                           f" bytes, binary_data_size gives {len(raw)}", field=field)
    if datatype == "BOOL":
        codes = np.frombuffer(raw, dtype=np.uint8)
        if (codes > 1).any():
            at = int(np.argmax(codes > 1))
            raise InvalidInput(f"{where}: BOOL byte {at} is {codes[at]}; only 0 and 1 are "
                               "booleans", field=field)
        return codes.view(np.bool_)
    return np.frombuffer(raw, dtype=dtype)


def _bytes_elements(raw: bytes, count: int, where: str, field: str, text: bool
                    ) -> np.ndarray:
    end = len(raw)
    if count > end // 4:  # each element has a 4-byte length: refuse before allocating
        raise InvalidInput(f"{where}: {count} BYTES elements cannot fit in {end} bytes",
                           field=field)
    values: list[Any] = [None] * count
    unpack, at = _LENGTH.unpack_from, 0
    try:
        for i in range(count):
            (size,) = unpack(raw, at)
            stop = at + 4 + size
            if stop > end:
                raise InvalidInput(f"{where}: BYTES element {i} needs {size} bytes; the "
                                   f"binary data ends at byte {end}", field=field)
            values[i] = raw[at + 4:stop].decode("utf-8") if text else raw[at + 4:stop]
            at = stop
    except struct.error:
        raise InvalidInput(f"{where}: BYTES element {i} has no length prefix (the binary "
                           f"data ends at byte {end})", field=field) from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{where}: BYTES element {i} is not UTF-8 text",
                           field=field) from None
    if at != end:
        raise InvalidInput(f"{where}: {end - at} bytes left after {count} BYTES elements",
                           field=field)
    out = np.empty(count, dtype=object)
    out[:] = values
    return out


def tensor_to_bytes(datatype: str, array: np.ndarray) -> bytes:
    """An array's values as V2 binary data (row-major, little-endian)."""
    if datatype == "BYTES":
        parts = []
        for value in array.reshape(-1):
            data = value if isinstance(value, bytes) else str(value).encode("utf-8")
            parts += [_LENGTH.pack(len(data)), data]
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).tobytes()


def binary_body(header: bytes, blobs: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """A binary response: the JSON header then the blobs, and the HTTP headers to send."""
    return (b"".join([header, *blobs]),
            {"Inference-Header-Content-Length": str(len(header))})
