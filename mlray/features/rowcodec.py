"""How the online store packs one view's row, and decodes many rows column by column.

A stored value is an 8-byte event time (µs since the epoch, big-endian with the sign bit
flipped, so byte order is time order) followed by the payload, in one of two layouts,
told apart by the payload's first byte:

- **fixed** (first byte ``0xC1``, which no msgpack object starts with), for views whose
  fields are all int64, float64 or bool: a fingerprint word (``0xC1`` and 7 bytes of a
  hash of the field list), the msgpack ``[names, kinds]`` of the view when written, 8
  little-endian bytes per field (int64, float64 bits, or 0/1), then one validity byte
  per field, each part padded to 8 bytes. Every row of a view has the same length, so
  the rows of a read are one matrix of 8-byte words (``np.frombuffer``): the event
  times, the check that a row has the view's current fields (one word compare) and the
  values are column slices of it. No Python object is made per value; each feature
  comes back as an Arrow array built from numpy. The names stay in every row so that
  a row outlives a change of the view's fields.
- **packed** (msgpack ``[names, values]``) for everything else, so values keep their
  types (strings, bytes, lists, maps). Rows written under the view's current names are
  decoded with one ``msgpack.unpackb`` over their concatenation.

A row written under another field list (a field added or removed since, or the older
``{feature: value}`` map) is decoded by name, row by row: a feature the row lacks reads
NOT_FOUND.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import struct
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
import pyarrow as pa

from mlray.features.definitions import duration_us
from mlray.features.repo import BoundView

__all__ = ["FeatureStatus", "decode_rows", "fixed_layout", "header", "pack_columns", "pack_rows"]

_HEADER = struct.Struct(">Q")
_FLIP = 1 << 63
_SIGN = np.int64(-(2**63))
_NAT = np.datetime64("NaT", "us")
_FIXED = b"\xc1"
_KINDS = {"int64": "i", "float64": "f", "bool": "b"}
_STRUCT = {"i": "q", "f": "d", "b": "q"}


class FeatureStatus(enum.IntEnum):
    """Per-value outcome of an online read."""

    NOT_FOUND = 0
    PRESENT = 1
    OUTSIDE_MAX_AGE = 2


def header(event_us: int) -> bytes:
    """The 8-byte stored form of an event time; byte order is time order."""
    return _HEADER.pack((event_us + _FLIP) & 0xFFFF_FFFF_FFFF_FFFF)


@functools.lru_cache(maxsize=4096)
def _packed_layout(names: tuple[str, ...]) -> bytes:
    """How a packed row written with field ``names`` starts: ``[`` then the names."""
    return b"\x92" + msgpack.packb(list(names), use_bin_type=True)


@dataclasses.dataclass(frozen=True)
class _Fixed:
    """Where things are in a stored value of a fixed-layout view (all 8-byte aligned)."""

    names: tuple[str, ...]
    kinds: str  # one letter per field: i(nt64), f(loat64), b(ool)
    prefix: bytes  # the payload's start: fingerprint word, then msgpack [names, kinds], padded
    fingerprint: np.int64  # the prefix's first word
    values: int  # word offset of the values in the stored value
    valid: int  # byte offset of the validity bytes in the stored value
    size: int  # bytes of a stored value
    index: dict[str, int]


@functools.lru_cache(maxsize=1024)
def _fixed(names: tuple[str, ...], kinds: str) -> _Fixed:
    described = msgpack.packb([list(names), kinds], use_bin_type=True)
    head = _FIXED + hashlib.blake2b(described, digest_size=7).digest() + described
    prefix = head + bytes(-len(head) % 8)
    w = len(names)
    start = 8 + len(prefix)
    return _Fixed(names=names, kinds=kinds, prefix=prefix,
                  fingerprint=np.frombuffer(prefix[:8], "<i8")[0], values=start // 8,
                  valid=start + 8 * w, size=start + 8 * w + -(-w // 8) * 8,
                  index={name: j for j, name in enumerate(names)})


_BY_VIEW: dict[int, tuple[Any, _Fixed | None]] = {}


def fixed_layout(bound: BoundView) -> _Fixed | None:
    """The fixed layout of the view when every field is int64, float64 or bool, else None
    (the view is stored packed). Kept per view object."""
    view = bound.view
    hit = _BY_VIEW.get(id(view))
    if hit is not None and hit[0] is view:
        return hit[1]
    fields = view.fields
    layout = None
    if fields and all(f.dtype in _KINDS for f in fields):
        layout = _fixed(tuple(f.name for f in fields), "".join(_KINDS[f.dtype] for f in fields))
    if len(_BY_VIEW) >= 1024:
        _BY_VIEW.clear()
    _BY_VIEW[id(view)] = (view, layout)
    return layout


def pack_rows(names: Sequence[str], rows: Any) -> list[bytes]:
    """Packed payloads (msgpack layout) of ``rows``, each a sequence of values in the order
    of ``names``."""
    head = _packed_layout(tuple(names))
    pack = msgpack.Packer(use_bin_type=True).pack
    return [head + pack(row) for row in rows]


def pack_columns(bound: BoundView, columns: dict[str, pa.ChunkedArray]) -> list[bytes]:
    """The payloads of a checked batch (every field of the view, cast to its type), one per
    row, in the view's layout."""
    layout = fixed_layout(bound)
    if layout is None:
        names = bound.view.feature_names
        return pack_rows(names, zip(*[_plain(columns[n]) for n in names], strict=True))
    n, w, a = len(columns[layout.names[0]]), len(layout.names), len(layout.prefix)
    matrix = np.zeros((n, layout.size - 8), np.uint8)
    matrix[:, :a] = np.frombuffer(layout.prefix, np.uint8)
    bits = np.zeros((n, w), "<i8")
    for j, name in enumerate(layout.names):
        column = columns[name]
        matrix[:, a + 8 * w + j] = column.is_valid().to_numpy(zero_copy_only=False)
        filled = column.fill_null(False if layout.kinds[j] == "b" else 0).to_numpy()
        bits[:, j] = filled.view("<i8") if layout.kinds[j] == "f" else filled
    matrix[:, a:a + 8 * w] = bits.view(np.uint8).reshape(n, 8 * w)
    blob, size = matrix.tobytes(), matrix.shape[1]
    return [blob[i * size:(i + 1) * size] for i in range(n)]


def _plain(column: pa.ChunkedArray) -> list[Any]:
    """Python values for msgpack: maps become dicts, floats stay floats."""
    values = column.to_pylist()
    if pa.types.is_map(column.type):
        return [None if v is None else dict(v) for v in values]
    return values


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 2**16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def unpack_by_name(payload: bytes) -> dict[str, Any]:
    """A row in any layout as ``{feature: value}`` (rows written under another field list)."""
    if payload[:1] == _FIXED:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(payload[8:])
        names, kinds = unpacker.unpack()
        at = 8 + unpacker.tell()
        at += -at % 8
        w = len(names)
        values = struct.unpack_from("<" + "".join(_STRUCT[k] for k in kinds), payload, at)
        valid = payload[at + 8 * w:at + 9 * w]
        return {name: (bool(v) if kind == "b" else v) if ok else None
                for name, kind, ok, v in zip(names, kinds, valid, values, strict=True)}
    obj = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    if isinstance(obj, dict):
        return obj
    names, values = obj
    return dict(zip(names, values, strict=False))


Columns = list[Sequence[Any] | pa.Array]


def decode_rows(bound: BoundView, wanted: Sequence[str], stored: Sequence[bytes | None],
                now_us: int) -> tuple[Columns, np.ndarray, np.ndarray]:
    """Columns of ``wanted`` (None or null unless PRESENT), ``(entities, features)`` int8
    statuses and event times of the stored values, the view's TTL measured from ``now_us``.

    Fixed-layout views give one Arrow array per feature; packed ones a sequence of Python
    values.
    """
    view = bound.view
    n, width = len(stored), len(wanted)
    status = np.zeros((n, width), dtype=np.int8)
    dense = None not in stored
    at: Sequence[int] = range(n) if dense else [
        i for i, raw in enumerate(stored) if raw is not None]
    layout = fixed_layout(bound)
    if not at:
        if layout is None:
            return [(None,) * n for _ in wanted], status, np.full(n, _NAT)
        types = [view.field(f).arrow_type for f in wanted]  # type: ignore[union-attr]
        return [pa.nulls(n, t) for t in types], status, np.full(n, _NAT)
    got: list[bytes] = stored if dense else [stored[i] for i in at]  # type: ignore[assignment]
    words = None if layout is None else _words(layout, got)
    if words is not None and len(words[0]) == len(got):
        times = words[0][:, 0].byteswap() ^ _SIGN
    else:
        times = np.frombuffer(b"".join([raw[:8] for raw in got]), ">i8") ^ _SIGN
    if dense:
        event = times.view("datetime64[us]")
    else:
        event = np.full(n, _NAT)
        event[at] = times.view("datetime64[us]")
    ttl_us = duration_us(view.ttl)
    fresh = times >= now_us - ttl_us if ttl_us else None
    if fresh is not None and fresh.all():
        fresh = None
    if fresh is not None:
        status[np.asarray(at)[~fresh]] = FeatureStatus.OUTSIDE_MAX_AGE
    if layout is None or words is None:
        return _decode_packed(bound, wanted, got, at, fresh, status), status, event
    matrix, sized, current = words
    if current and dense and fresh is None:
        return _decode_all(layout, wanted, status, matrix), status, event
    return _decode_fixed(layout, wanted, got, at, fresh, status, matrix, sized), status, event


def _words(layout: _Fixed, got: list[bytes]) -> tuple[np.ndarray, np.ndarray, bool]:
    """The stored values of the layout's size as one matrix of 8-byte words, which of
    ``got`` they are, and whether they are all of them and all of the current layout.

    When the values add up to whole rows and every row's fingerprint word is the
    layout's, every value has the layout's size: by induction from the first row, each
    row starts where a value starts, and a value with this fingerprint has this size.
    Only otherwise are the lengths looked at one by one.
    """
    words = layout.size // 8
    blob = b"".join(got)
    if len(blob) == layout.size * len(got):
        matrix = np.frombuffer(blob, "<i8").reshape(len(got), words)
        if (matrix[:, 1] == layout.fingerprint).all():
            return matrix, np.arange(len(got)), True
    sized = np.flatnonzero(np.fromiter(map(len, got), np.int64, len(got)) == layout.size)
    blob = b"".join([got[k] for k in sized])
    return np.frombuffer(blob, "<i8").reshape(len(sized), words), sized, False


def _decode_fixed(layout: _Fixed, wanted: Sequence[str], got: list[bytes], at: Sequence[int],
                  fresh: np.ndarray | None, status: np.ndarray, matrix: np.ndarray,
                  rows: np.ndarray) -> Columns:
    """The fixed layout: rows of the current layout (``matrix``, the stored ``rows`` of the
    fixed size) decoded together, rows under another field list by name."""
    n, w = len(status), len(layout.names)
    current = matrix[:, 1] == layout.fingerprint
    if fresh is not None:
        current &= fresh[rows]
    values = matrix[:, layout.values:layout.values + w]
    validity = matrix.view(np.uint8)[:, layout.valid:layout.valid + w]
    rows = rows[current]
    where = rows if isinstance(at, range) else np.asarray(at, dtype=np.intp)[rows]
    bits = np.zeros((w, n), np.int64)
    valid = np.zeros((w, n), bool)
    bits[:, where] = values[current].T
    valid[:, where] = validity[current].T != 0
    status[where] = FeatureStatus.PRESENT
    if len(rows) < len(got):
        _by_name(layout, wanted, got, at, fresh, set(rows.tolist()), status, bits, valid)
    return _arrays(layout, wanted, bits, valid)


def _decode_all(layout: _Fixed, wanted: Sequence[str], status: np.ndarray,
                matrix: np.ndarray) -> Columns:
    """The common case: a row for every entity, all fresh and of the current layout."""
    w = len(layout.names)
    bits = np.ascontiguousarray(matrix[:, layout.values:layout.values + w].T)
    validity = matrix.view(np.uint8)[:, layout.valid:layout.valid + w]
    status[:] = FeatureStatus.PRESENT
    return _arrays(layout, wanted, bits, None if validity.all() else validity.T != 0)


def _arrays(layout: _Fixed, wanted: Sequence[str], bits: np.ndarray,
            valid: np.ndarray | None) -> Columns:
    """One Arrow array per wanted feature from the ``(fields, entities)`` value bits and
    validity (None: all valid): one array per kind, sliced."""
    n = bits.shape[1]
    out: Columns = [None] * len(wanted)  # type: ignore[list-item]
    for kind, positions, fields in _by_kind(layout.kinds, layout.names, tuple(wanted)):
        block = bits if fields is None else bits[fields]
        data = block.view(np.float64) if kind == "f" else block != 0 if kind == "b" else block
        mask = None
        if valid is not None:
            ok = valid if fields is None else valid[fields]
            mask = None if ok.all() else ~ok.ravel()
        array = pa.array(data.ravel(), mask=mask)
        for k, c in enumerate(positions):
            out[c] = array.slice(k * n, n)
    return out


def _by_name(layout: _Fixed, wanted: Sequence[str], got: list[bytes], at: Sequence[int],
             fresh: np.ndarray | None, done: set[int], status: np.ndarray, bits: np.ndarray,
             valid: np.ndarray) -> None:
    """Fill in the rows written under another field list (not expired, not ``done``)."""
    for k, raw in enumerate(got):
        if k in done or (fresh is not None and not fresh[k]):
            continue
        row = unpack_by_name(raw[8:])
        i = at[k]
        for c, f in enumerate(wanted):
            value = row.get(f)
            j = layout.index[f]
            fits = isinstance(value, int | float) if layout.kinds[j] == "f" \
                else isinstance(value, int) and -(2**63) <= value < 2**63  # not a float
            present = f in row and (value is None or fits)
            status[i, c] = FeatureStatus.PRESENT if present else FeatureStatus.NOT_FOUND
            if value is not None and fits:
                bits[j, i] = np.float64(value).view(np.int64) if layout.kinds[j] == "f" \
                    else int(value)
                valid[j, i] = True


@functools.lru_cache(maxsize=1024)
def _by_kind(kinds: str, names: tuple[str, ...], wanted: tuple[str, ...],
             ) -> list[tuple[str, list[int], list[int] | None]]:
    """The wanted features grouped by kind: ``(kind, positions in wanted, field indexes)``
    (None: every field in order), so each kind becomes one Arrow array, sliced per
    feature."""
    index = {name: j for j, name in enumerate(names)}
    groups: dict[str, tuple[list[int], list[int]]] = {}
    for c, f in enumerate(wanted):
        positions, fields = groups.setdefault(kinds[index[f]], ([], []))
        positions.append(c)
        fields.append(index[f])
    whole = list(range(len(names)))
    return [(kind, positions, None if fields == whole else fields)
            for kind, (positions, fields) in groups.items()]


def _decode_packed(bound: BoundView, wanted: Sequence[str], got: list[bytes], at: Sequence[int],
                   fresh: np.ndarray | None, status: np.ndarray) -> Columns:
    """The msgpack layout: rows of the current field list in one ``unpackb``, others by name."""
    names = bound.view.feature_names
    n = len(status)
    layout = _packed_layout(tuple(names))
    cut = 8 + len(layout)
    keep = None if fresh is None else fresh.tolist()
    fast = [raw[cut:] for raw in got if raw.startswith(layout, 8)]
    if keep is None and len(fast) == len(got):
        same = None  # the common case: every row fresh, written under the current fields
    else:
        same = [raw.startswith(layout, 8) for raw in got]
        if keep is not None:
            same = [s and f for s, f in zip(same, keep, strict=True)]
            fast = [raw[cut:] for raw, s in zip(got, same, strict=True) if s]
    decoded = msgpack.unpackb(_array_header(len(fast)) + b"".join(fast), raw=False,
                              strict_map_key=False)
    index = {name: j for j, name in enumerate(names)}
    if same is None and len(fast) == n:
        rows = decoded
        status[:] = FeatureStatus.PRESENT
    else:
        same = same or [True] * len(got)
        filler = (None,) * len(names)
        rows = [filler] * n
        it = iter(decoded)
        for k, (i, s) in enumerate(zip(at, same, strict=True)):
            if s:
                rows[i] = next(it)
                status[i] = FeatureStatus.PRESENT
            elif keep is None or keep[k]:  # another field list: decode by name
                row = unpack_by_name(got[k][8:])
                rows[i] = tuple(row.get(name) for name in names)
                status[i] = [FeatureStatus.PRESENT if f in row else FeatureStatus.NOT_FOUND
                             for f in wanted]
    columns = list(zip(*rows, strict=True)) if names else []
    return [columns[index[f]] for f in wanted]
