"""The point-in-time (as-of) join, vectorised with numpy.

For each entity row with key ``k`` and time ``t``, pick the feature row with key ``k``
whose event time ``e`` is the greatest with ``t - ttl <= e <= t`` (both inclusive;
``ttl == 0``: no lower bound); ties on ``e`` go to the greatest created time, and rows
equal on both go to the one that comes last in the feature table. The created time
only breaks ties; it filters nothing. Nothing after ``t`` is ever taken.

Why numpy rather than ``pandas.merge_asof`` or Acero: the rule needs an exact,
documented tie-break, inclusive ends, null keys that simply match nothing, several
key columns and no requirement that inputs be sorted. Here it is one sort of the
feature rows and one binary search, in numpy's C loops with no per-row Python:

1. key columns of both sides are dictionary-encoded together into one integer code
   (null → no match);
2. event times become whole steps of the coarsest unit (s, ms, µs, ns) that every
   feature row's time is a multiple of, counted from the earliest, so that ``key *
   steps + step`` is one int64. When it does not fit (e.g. µs times over a year with
   more than ~140k keys) times are first replaced by their rank in time order, with
   the tie-breaks applied, at the cost of one more sort;
3. one sort of that packed value groups the feature rows by key in time order; only
   runs of equal (key, time), if any, are then re-ordered by created time and table
   order;
4. each entity row packs its key with its time rounded down to a step (clipped to the
   feature rows' range), and ``searchsorted(..., side="right") - 1`` finds the latest
   feature row at or before it. It matches when that row has the entity's key and is
   within the TTL. The entity rows are searched in sorted order, so the search walks
   the feature rows once.

It is O(m log m + n log n) time and O(n + m) extra memory and keeps the entity rows
in their input order, whereas ``merge_asof`` needs both sides globally sorted by time
(the caller pays those sorts), then a re-sort back to input order, and rejects null
keys. ``bench/features.py --full`` measures it beside ``merge_asof`` (1M entity rows x
10M feature rows, 3 views: 5.1 s against 6.8 s on this 2-core machine, identical
output; reading the Parquet is a third of either).

The result is row indices, so the caller takes whole rows (nulls stay nulls) with
one Arrow ``take`` per column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = ["asof_indices", "encode_keys"]


def _codes(left: pa.Array | pa.ChunkedArray, right: pa.Array | pa.ChunkedArray,
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """Joint dictionary codes of one key column (null → -1) and the dictionary size."""
    both = pa.chunked_array([*_chunks(left), *_chunks(right)]).combine_chunks()
    encoded = both.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    n = len(left)
    return codes[:n], codes[n:], max(len(encoded.dictionary), 1)


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def encode_keys(left: Sequence[pa.Array | pa.ChunkedArray],
                right: Sequence[pa.Array | pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray]:
    """One int64 code per row for the key tuple, equal across sides; -1 where any part is
    null. Key columns must already have the same type on both sides."""
    n = len(left[0]) if left else 0
    lcode = np.zeros(n, dtype=np.int64)
    rcode = np.zeros(len(right[0]) if right else 0, dtype=np.int64)
    for i, (lcol, rcol) in enumerate(zip(left, right, strict=True)):
        lc, rc, size = _codes(lcol, rcol)
        if i == 0:
            lcode, rcode = lc, rc
            continue
        lnull, rnull = (lcode < 0) | (lc < 0), (rcode < 0) | (rc < 0)
        joint = np.concatenate([lcode * size + lc, rcode * size + rc])
        codes, _ = pd.factorize(joint)  # keep codes dense so the next product cannot overflow
        codes = codes.astype(np.int64)
        lcode, rcode = codes[:n], codes[n:]
        lcode[lnull] = -1
        rcode[rnull] = -1
    return lcode, rcode


def asof_indices(
    left_key: np.ndarray,
    left_ts: np.ndarray,
    right_key: np.ndarray,
    right_ts: np.ndarray,
    right_created: np.ndarray | None = None,
    ttl: int = 0,
) -> np.ndarray:
    """For each left row, the index of its as-of match among the right rows, or -1.

    Args:
        left_key: int64 key codes of the entity rows (-1 matches nothing), from
            :func:`encode_keys`.
        left_ts: int64 times of the entity rows (any unit, the same on both sides).
        right_key: int64 key codes of the feature rows (-1: the row is ignored).
        right_ts: int64 event times of the feature rows.
        right_created: int64 created times (tie-break only), or None.
        ttl: the TTL in the same unit; 0 means no limit.

    Returns:
        int64 indices into the right rows, one per left row, -1 where nothing matches.
    """
    n = len(left_key)
    out = np.full(n, -1, dtype=np.int64)
    usable = np.flatnonzero(right_key >= 0)
    if n == 0 or usable.size == 0:
        return out
    rk, rt = right_key[usable], right_ts[usable]
    created = None if right_created is None else right_created[usable]
    keys = int(max(rk.max(), left_key.max())) + 1
    scaled = _scaled_times(rt, left_ts, keys)
    if scaled is None:  # (key, time) does not fit in an int64: times become ranks
        rtime, ltime, span = _ranked_times(rt, left_ts, created)
    else:
        rtime, ltime, span = scaled
    # One sort of (key, time) packed in an int64 groups the rows by key in time order.
    packed = rk * span + rtime
    order = np.argsort(packed)
    in_order = packed[order]
    if scaled is not None:
        _break_ties(order, in_order, created)
    # The last right row at or before each left row's time, among those of its key. The
    # left rows are searched in sorted order: the search then walks the right rows once,
    # and the matches come out in order, so reading them does not jump about.
    wanted = np.maximum(left_key, 0) * span + ltime
    by_want = np.argsort(wanted)
    hit = np.searchsorted(in_order, wanted[by_want], side="right") - 1
    safe = np.maximum(hit, 0)
    key = left_key[by_want]
    found = (hit >= 0) & (key >= 0) & (in_order[safe] // span == key)
    row = order[safe]
    if ttl > 0:
        age = left_ts[by_want] - rt[row]  # >= 0 for a match; negative only if it wrapped
        found &= (age >= 0) & (age <= ttl)
    out[by_want[found]] = usable[row[found]]
    return out


def _scaled_times(rt: np.ndarray, left_ts: np.ndarray, keys: int,
                  ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Times as steps of the coarsest unit (s, ms, µs or ns) that every right time is a
    whole number of, from the earliest right time; left times rounded down to a step and
    clipped to the right times' range (-1: before all of them). None when ``keys`` times
    the number of steps does not fit in an int64."""
    low, high = int(rt.min()), int(rt.max())
    if high - low >= 2**62:
        return None
    offset = rt - low
    for unit in (10**9, 10**6, 10**3, 1):
        if not (offset % unit).any():
            break
    steps = int(offset.max()) // unit + 1
    if keys * steps >= 2**62:
        return None
    rtime = offset // unit if unit > 1 else offset
    ltime = (np.clip(left_ts, low - 1, high) - low) // unit  # clipped first: no overflow
    return rtime, ltime, steps


def _ranked_times(rt: np.ndarray, left_ts: np.ndarray, created: np.ndarray | None,
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Times as positions in time order with every tie-break applied (distinct per row);
    a left time becomes the position of the last right row at or before it."""
    by_time = np.argsort(rt, kind="stable") if created is None else np.lexsort((created, rt))
    rank = np.empty(len(rt), dtype=np.int64)
    rank[by_time] = np.arange(len(rt), dtype=np.int64)
    ltime = np.searchsorted(rt[by_time], left_ts, side="right") - 1
    return rank, ltime, len(rt)


def _break_ties(order: np.ndarray, in_order: np.ndarray, created: np.ndarray | None) -> None:
    """Within runs of equal (key, time), order rows by created time, then table order, in
    place (the sort before was not stable)."""
    same = in_order[1:] == in_order[:-1]
    if not same.any():
        return
    tied = np.zeros(len(in_order), dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    at = np.flatnonzero(tied)
    rows = order[at]
    later = np.zeros(len(rows), np.int64) if created is None else created[rows]
    order[at] = rows[np.lexsort((rows, later, in_order[at]))]
