"""Per-client token buckets, a TTL + LRU prediction cache and a bounded body reader, as
plain code."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import Any

import numpy as np

from mlray.errors import PayloadTooLarge

__all__ = ["PredictionCache", "RateLimiter", "TokenBucket", "cache_key", "read_bounded"]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; each request takes some."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()

    def take(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; 0.0 when allowed, else the seconds to wait (Retry-After)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate


class RateLimiter:
    """One bucket per client key, keeping at most ``max_clients`` (least recent dropped)."""

    def __init__(self, rate: float, burst: float, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        TokenBucket(rate, burst, clock)  # validates
        self.rate, self.burst, self.max_clients, self._clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[Hashable, TokenBucket] = OrderedDict()

    def take(self, client: Hashable, cost: float = 1.0) -> float:
        """As :meth:`TokenBucket.take`, for ``client``'s bucket."""
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst, self._clock)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(client)
        return bucket.take(cost)


def cache_key(model: str, version: int, inputs: np.ndarray | Mapping[str, np.ndarray]) -> bytes:
    """A key for one input batch of one version (an array, or named columns), hashed.

    Canonical: columns in name order, each by dtype, shape and bytes (object columns by
    their values' text), so equal inputs give equal keys on every replica.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{model}\0{version}".encode())
    columns = inputs.items() if isinstance(inputs, Mapping) else [("", inputs)]
    for name, values in sorted(columns, key=lambda kv: kv[0]):
        array = np.asarray(values)
        digest.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        if array.dtype == object:
            digest.update("\x1f".join(map(repr, array.reshape(-1).tolist())).encode())
        else:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.digest()


class PredictionCache:
    """At most ``max_entries`` results, each kept for ``ttl_s``; least recently used go first."""

    def __init__(self, max_entries: int = 10_000, ttl_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("max_entries must be >= 1 and ttl_s > 0")
        self.max_entries, self.ttl_s, self._clock = max_entries, ttl_s, clock
        self._items: OrderedDict[bytes, tuple[float, Any]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: bytes) -> Any | None:
        """The cached value, or None when absent or expired."""
        item = self._items.get(key)
        if item is None or self._clock() - item[0] > self.ttl_s:
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[1]

    def put(self, key: bytes, value: Any) -> None:
        """Store ``value`` (evicting the least recently used entry when full)."""
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


async def read_bounded(chunks: AsyncIterator[bytes], limit: int, *, declared: int | None = None,
                       drain_bytes: int = 0, drain_s: float = 10.0) -> bytes:
    """The body from ``chunks``, never holding more than ``limit`` bytes of it.

    Past the limit (or at once when ``declared``, the Content-Length, says so) nothing more
    is kept: up to ``drain_bytes`` more are read and dropped, for at most ``drain_s``, so
    that a client that sends its whole body before reading has sent it and reads the 413
    (an answer sent while the client still writes reaches it as a connection reset).

    Raises:
        PayloadTooLarge: the body is larger than ``limit`` (field ``body``).
    """
    if declared is not None and declared > limit:
        if declared - limit <= drain_bytes:
            await _drain(chunks, declared + 1, drain_s)
        raise PayloadTooLarge(f"body of {declared} bytes; at most {limit}", field="body")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            await _drain(chunks, drain_bytes, drain_s)
            raise PayloadTooLarge(f"body of more than {limit} bytes; at most {limit}",
                                  field="body")
        if chunk:
            parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _drain(chunks: AsyncIterator[bytes], most: int, seconds: float) -> None:
    """Read and drop up to ``most`` bytes of ``chunks`` within ``seconds``."""
    async def drop() -> None:
        dropped = 0
        async for chunk in chunks:
            dropped += len(chunk)
            if dropped >= most:
                return

    if most > 0:
        try:
            await asyncio.wait_for(drop(), seconds)
        except TimeoutError:
            return
