"""Redis state store: the cluster backend.

Layout under ``<prefix>``: ``<prefix>:c:<collection>``, a hash from key to
``<version>:<JSON {"t": updated_at, "d": data}>`` (so a read is one HGET), plus
``<prefix>:audit`` (a stream whose ids are ``<seq>-0``) and ``<prefix>:audit:seq``.
Every write is one Lua script, so its checks, writes and audit entry are atomic.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from mlray._private.redact import redact
from mlray.errors import BackendUnavailable, ConfigError
from mlray.storage.audit_chain import GENESIS, link
from mlray.storage.base import (
    AuditEntry,
    Delete,
    Document,
    Op,
    StateStore,
    check_expected,
    encode,
    matches,
)
from mlray.storage.redis_durability import warn_if_not_durable

__all__ = ["RedisStateStore"]

# KEYS: the collection hash of each op, then the audit counter, stream and chain head.
# ARGV[1]: JSON {"ops": [{"k", "e"?, "d"? (encoded payload; absent = delete)}], "a"?: audit,
# "s"?: its seq, "p"?: the head hash it was chained after, "h"?: its own hash}. The entry
# is hashed by the caller (Lua here has no sha256): a head that moved meanwhile is 'stale'.
_APPLY = """
local req = cjson.decode(ARGV[1])
local n = #req.ops
if req.a ~= nil then
  local seq = tonumber(redis.call('GET', KEYS[n + 1]) or '0')
  local head = redis.call('GET', KEYS[n + 3]) or ARGV[2]
  if seq + 1 ~= req.s or head ~= req.p then return {'stale'} end
end
local seen = {}
local function version_of(i, key)
  local id = KEYS[i] .. '\\0' .. key
  if seen[id] == nil then
    local cur = redis.call('HGET', KEYS[i], key)
    seen[id] = cur and tonumber(string.match(cur, '^(%d+):')) or 0
  end
  return id, seen[id]
end
for i, op in ipairs(req.ops) do
  local id, have = version_of(i, op.k)
  if op.e ~= nil and have ~= op.e then return {'conflict', i, have} end
  if op.d == nil then seen[id] = 0 else seen[id] = have + 1 end
end
seen = {}
local versions = {}
for i, op in ipairs(req.ops) do
  local id, have = version_of(i, op.k)
  if op.d == nil then
    redis.call('HDEL', KEYS[i], op.k)
    seen[id] = 0
    versions[i] = 0
  else
    seen[id] = have + 1
    redis.call('HSET', KEYS[i], op.k, seen[id] .. ':' .. op.d)
    versions[i] = seen[id]
  end
end
if req.a ~= nil then
  redis.call('SET', KEYS[n + 1], req.s)
  redis.call('SET', KEYS[n + 3], req.h)
  redis.call('XADD', KEYS[n + 2], req.s .. '-0', 'e', req.a)
end
return {'ok', versions}
"""


def _decode(collection: str, key: str, raw: bytes) -> Document:
    version, _, payload = raw.partition(b":")
    body = json.loads(payload)
    return Document(collection=collection, key=key, version=int(version), data=body["d"],
                    updated_at=body["t"])


class RedisStateStore(StateStore):
    """Documents in Redis hashes; writes are atomic Lua scripts."""

    def __init__(self, url: str, prefix: str = "mlray") -> None:
        self.url = url
        self.prefix = prefix
        try:
            self._redis = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        except ValueError as exc:
            raise ConfigError(f"state_url {redact(url)!r}: {exc}", field="state_url") from None
        with self._guard():
            self._redis.ping()
            self._apply = self._redis.register_script(_APPLY)
            warn_if_not_durable(self._redis, url)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise BackendUnavailable(f"Redis state at {redact(self.url)}: {exc}") from exc

    def _hash(self, collection: str) -> str:
        return f"{self.prefix}:c:{collection}"

    def get(self, collection: str, key: str) -> Document | None:
        with self._guard():
            raw = self._redis.hget(self._hash(collection), key)
        return None if raw is None else _decode(collection, key, raw)

    def get_many(self, items: Sequence[tuple[str, str]]) -> list[Document | None]:
        with self._guard():
            pipe = self._redis.pipeline(transaction=False)
            for collection, key in items:
                pipe.hget(self._hash(collection), key)
            raws = pipe.execute()
        return [None if raw is None else _decode(c, k, raw)
                for (c, k), raw in zip(items, raws, strict=True)]

    def list(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        with self._guard():
            raws = self._redis.hgetall(self._hash(collection))
        docs = []
        for raw_key in sorted(raws):
            key = raw_key.decode()
            if prefix and not key.startswith(prefix):
                continue
            doc = _decode(collection, key, raws[raw_key])
            if matches(doc.data, where):
                docs.append(doc)
                if limit is not None and len(docs) >= limit:
                    break
        return docs

    def apply(self, ops: Sequence[Op], audit: AuditEntry | None = None) -> list[Document | None]:
        now = time.time()
        keys: list[str] = []
        encoded: list[dict[str, Any]] = []
        for op in ops:
            keys.append(self._hash(op.collection))
            item: dict[str, Any] = {"k": op.key}
            if op.expected_version is not None:
                item["e"] = op.expected_version
            if not isinstance(op, Delete):
                item["d"] = encode({"t": now, "d": op.data})
            encoded.append(item)
        keys += [f"{self.prefix}:audit:seq", f"{self.prefix}:audit",
                 f"{self.prefix}:audit:head"]
        request: dict[str, Any] = {"ops": encoded}
        if not ops and audit is None:
            return []
        with self._guard():
            while True:
                if audit is not None:
                    seq, head = self._redis.mget(keys[-3], keys[-1])
                    entry = link(audit, int(seq or 0) + 1, (head or GENESIS.encode()).decode())
                    request.update(a=entry.model_dump_json(exclude={"seq"}), s=entry.seq,
                                   p=entry.prev_hash, h=entry.hash)
                reply = self._apply(keys=keys, args=[json.dumps(request), GENESIS])
                if reply[0] != b"stale":
                    break
        if reply[0] == b"conflict":
            op = ops[int(reply[1]) - 1]
            check_expected(op, int(reply[2]))
        versions = reply[1]
        return [
            None if isinstance(op, Delete)
            else Document(collection=op.collection, key=op.key, version=int(v),
                          data=op.data, updated_at=now)
            for op, v in zip(ops, versions, strict=True)
        ]

    def audit_log(
        self, *, after_seq: int = 0, limit: int = 100, project: str | None = None
    ) -> list[AuditEntry]:
        stream = f"{self.prefix}:audit"
        out: list[AuditEntry] = []
        start = f"({after_seq}-0" if after_seq else "-"
        with self._guard():
            while len(out) < limit:
                chunk = self._redis.xrange(stream, min=start, max="+", count=max(limit, 100))
                if not chunk:
                    break
                for entry_id, fields in chunk:
                    seq = int(entry_id.decode().split("-")[0])
                    entry = AuditEntry.model_validate_json(fields[b"e"]).model_copy(
                        update={"seq": seq})
                    if project is None or entry.project == project:
                        out.append(entry)
                        if len(out) >= limit:
                            break
                start = f"({chunk[-1][0].decode()}"
        return out

    def audit_last_seq(self) -> int:
        with self._guard():
            return int(self._redis.get(f"{self.prefix}:audit:seq") or 0)

    def close(self) -> None:
        self._redis.close()

    def drop_all(self) -> None:
        """Delete every key under this store's prefix (used by tests and benchmarks)."""
        with self._guard():
            for key in self._redis.scan_iter(match=f"{self.prefix}:*", count=1000):
                self._redis.delete(key)
