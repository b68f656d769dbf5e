"""Redis online store: one packed value per (view, entity key), read with pipelined MGETs.

Layout: key ``<prefix>:fv:<view>:<msgpack(entity key)>``, value ``<8-byte event time>
<msgpack [names, values]>`` (see :mod:`mlray.features.online`); the event time is
microseconds since the epoch, big-endian with the sign bit flipped, so byte order is
time order. The stored value is what :meth:`OnlineStore._get` returns, so a read hands
the MGET replies to the decoder as they are.

Why one packed value rather than one hash per entity and view (DESIGN's table says
hash; this is the better choice, and the difference is large): a read of N entities
of a view is one ``MGET`` of N keys, a single command whose reply is N bulk strings,
instead of N ``HMGET``/``HGETALL`` commands, each parsed and answered separately. The
issue's measurements on this kind of machine: 100 entities x 50 features read as
hashes (one HMGET per view per entity) cost 2.8 ms p50 with redis-py, the same data
as one packed value per entity and view with a single MGET 0.17 ms. Decoding is one
msgpack call per view (over the concatenated values) instead of 50 bytes-to-str
conversions per entity, and the packed form
keeps types (int, float, bool, bytes, lists, maps) that hash fields flatten to
strings. What a hash would give, updating one feature in place, the contract does not
need: a write replaces the view's row for that entity as of its event time.

Writes are a Lua script over a batch of keys: for each it compares the stored
8-byte prefix (``GETRANGE 0 7``) byte by byte and only ``SET``s when the new event
time is not older, so a late write cannot go back in time and two writers cannot
interleave between the check and the set. The comparison is done on bytes in Lua
(not with ``struct`` or string ``<``, which uses the server's collation locale).
Batched keys may hash to different slots: on Redis Cluster, use one batch per key.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import redis

from mlray.errors import BackendUnavailable, ConfigError
from mlray.features.online import OnlineStore, _header

__all__ = ["RedisOnlineStore"]

# KEYS: one per item; ARGV: the packed values in the same order. Returns how many were set.
_PUT = """
local function not_older(new, cur)
  for i = 1, 8 do
    local a, b = string.byte(new, i), string.byte(cur, i)
    if a ~= b then return a > b end
  end
  return true
end
local applied = 0
for i = 1, #KEYS do
  local cur = redis.call('GETRANGE', KEYS[i], 0, 7)
  if string.len(cur) < 8 or not_older(ARGV[i], cur) then
    redis.call('SET', KEYS[i], ARGV[i])
    applied = applied + 1
  end
end
return applied
"""
_WRITE_BATCH = 1000
_READ_BATCH = 10_000


class RedisOnlineStore(OnlineStore):
    """Latest feature rows as packed Redis strings; reads are pipelined MGETs."""

    def __init__(self, url: str, prefix: str = "mlray", *, timeout_s: float = 2.0) -> None:
        self.url = url
        self.prefix = prefix
        try:
            self._redis = redis.Redis.from_url(url, socket_timeout=timeout_s,
                                               socket_connect_timeout=timeout_s)
        except ValueError as exc:
            raise ConfigError(f"online store url {url!r}: {exc}", field="online_url") from None
        with self._guard():
            self._redis.ping()
            self._put_script = self._redis.register_script(_PUT)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis online store at {self.url}: {exc}") from exc

    def _prefix(self, view: str) -> bytes:
        return f"{self.prefix}:fv:{view}:".encode()

    def _put(self, view: str, items: Sequence[tuple[bytes, int, bytes]]) -> int:
        head = self._prefix(view)
        with self._guard():
            pipe = self._redis.pipeline(transaction=False)
            for start in range(0, len(items), _WRITE_BATCH):
                batch = items[start:start + _WRITE_BATCH]
                self._put_script(keys=[head + k for k, _, _ in batch],
                                 args=[_header(ts) + v for _, ts, v in batch], client=pipe)
            return sum(int(n) for n in pipe.execute())

    def _get(self, view: str, keys: Sequence[bytes]) -> list[bytes | None]:
        return self._get_many([(view, keys)])[0]

    def _get_many(self, requests: Sequence[tuple[str, Sequence[bytes]]],
                  ) -> list[list[bytes | None]]:
        """Every view's keys in one MGET (a pipeline of MGETs of at most ``_READ_BATCH`` keys
        when there are more): one round trip for the whole read."""
        flat: list[bytes] = []
        for view, keys in requests:
            head = self._prefix(view)
            flat += [head + k for k in keys]
        if not flat:
            return [[] for _ in requests]
        with self._guard():
            if len(flat) <= _READ_BATCH:
                values = self._redis.execute_command("MGET", *flat)
            else:
                pipe = self._redis.pipeline(transaction=False)
                for start in range(0, len(flat), _READ_BATCH):
                    pipe.execute_command("MGET", *flat[start:start + _READ_BATCH])
                values = [v for chunk in pipe.execute() for v in chunk]
        out, start = [], 0
        for _, keys in requests:
            out.append(values[start:start + len(keys)])
            start += len(keys)
        return out

    def drop_view(self, view: str) -> None:
        pattern = self._prefix(view) + b"*"
        with self._guard():
            for key in self._redis.scan_iter(match=pattern, count=1000):
                self._redis.delete(key)

    def drop_all(self) -> None:
        """Delete every online row under this store's prefix (tests and benchmarks)."""
        with self._guard():
            for key in self._redis.scan_iter(match=f"{self.prefix}:fv:*", count=1000):
                self._redis.delete(key)

    def close(self) -> None:
        self._redis.close()
