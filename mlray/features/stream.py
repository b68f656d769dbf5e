"""The stream processor of one streaming feature view: Redis Stream → windows → stores.

One :meth:`StreamProcessor.run_once` claims a dead consumer's pending entries
(``XAUTOCLAIM``, idle longer than ``claim_idle_ms``), reads new ones (``XREADGROUP``),
and for the batch: decodes, transforms and validates the events, adds them to the
view's windows (:mod:`mlray.features.windows`), writes the resulting rows online and
offline, stores the touched entities' window snapshots, and only then ``XACK``s.

Keys: the stream is the one the view names (a producer's contract, like a topic; give
it the platform's prefix, e.g. ``mlray:transactions``, to keep it apart on a shared
Redis), read in the consumer group ``<prefix>:<project>:<view>``; the processor's own
keys all start with ``<prefix>:<project>:`` (the project of its online store), so two
projects' views of one name never share a group or window state.

Delivery is at least once; the effect on windowed values is exactly once:

* window state lives in the Redis hash ``<prefix>:<project>:win:<view>`` (one snapshot
  per entity, with a version in ``<prefix>:<project>:winver:<view>``); a batch commits its
  snapshots with a compare-and-set script after its writes and before its acks, and a
  failed batch drops its in-memory changes by reloading the snapshots. A processor that
  restarts, or claims another's messages, starts from the committed state, and events
  it has already counted are recognised by their event id;
* online writes never go back in time, so rewriting a row is harmless; offline, a
  crash between the writes and the commit can append a row twice (same values).

Failures: an undecodable or invalid message goes to the dead-letter stream
``<stream>:dead`` at once, with its error; any other failure isolates the message
(the batch is retried one message at a time) and leaves it pending, and once it has
been delivered ``max_deliveries`` times it is dead-lettered with its last error.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import socket
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
import pandas as pd
import pyarrow as pa
import redis

from mlray.errors import BackendUnavailable, InvalidInput
from mlray.features.definitions import FeatureField, StreamSource
from mlray.features.offline import OfflineStore
from mlray.features.ondemand import load_function
from mlray.features.online import OnlineStore, encode_key
from mlray.features.repo import FeatureRepo
from mlray.features.validate import check_fields
from mlray.features.windows import Outcome, WindowStore

__all__ = ["StreamProcessor", "StreamStats", "publish"]

EVENT_FIELD = "event"  # a message's JSON body; otherwise its fields are the event
_TS = pa.timestamp("us", tz="UTC")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# KEYS: state hash, version hash. ARGV: n, then n x (field, expected version, snapshot).
_COMMIT = """
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local cur = redis.call('HGET', KEYS[2], ARGV[2 + 3 * i]) or '0'
  if cur ~= ARGV[3 + 3 * i] then return 0 end
end
for i = 0, n - 1 do
  local f = ARGV[2 + 3 * i]
  if ARGV[4 + 3 * i] == '' then redis.call('HDEL', KEYS[1], f)
  else redis.call('HSET', KEYS[1], f, ARGV[4 + 3 * i]) end
  redis.call('HINCRBY', KEYS[2], f, 1)
end
return 1
"""


def publish(client: redis.Redis, stream: str, events: Iterable[Mapping[str, Any]], *,
            maxlen: int | None = None) -> list[str]:
    """Append events to ``stream`` as JSON (datetimes as ISO 8601); returns the entry ids."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        body = json.dumps(dict(event), default=_json_default, separators=(",", ":"))
        pipe.xadd(stream, {EVENT_FIELD: body}, maxlen=maxlen, approximate=True)
    try:
        return [i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute()]
    except redis.RedisError as exc:
        raise BackendUnavailable(f"cannot publish to {stream}: {exc}") from exc


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidInput("event timestamps need a time zone", field="event_timestamp")
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@dataclasses.dataclass
class StreamStats:
    """Counts since the processor started."""

    read: int = 0
    claimed: int = 0
    acked: int = 0
    added: int = 0
    duplicates: int = 0
    late: int = 0
    dead: int = 0
    failed: int = 0
    rows_online: int = 0
    rows_offline: int = 0
    conflicts: int = 0


@dataclasses.dataclass
class _Event:
    msg_id: str
    fields: dict[bytes, bytes]
    key: bytes = b""
    parts: list[Any] = dataclasses.field(default_factory=list)
    ts_us: int = 0
    event_id: str = ""
    row: dict[str, Any] = dataclasses.field(default_factory=dict)
    values: tuple[Any, ...] = ()


class _Retry(Exception):
    """Another consumer committed the same entities first; redo the batch."""


class StreamProcessor:
    """Consumes one streaming view's Redis Stream in a consumer group (plain class, no Ray).

    Args:
        repo: the definitions; ``view`` must have a stream source.
        view: the view's name.
        client: the Redis holding the stream and the window state.
        online: where rows are written online.
        offline: where rows are appended offline (None: not at all).
        group: the consumer group (default ``<prefix>:<project>:<view>``: platforms with
            their own prefixes reading one stream each see every event, rather than
            splitting them).
        consumer: this consumer's name (default: host, pid and a random suffix).
        batch_size: entries per read.
        claim_idle_ms: pending entries idle this long are claimed from their consumer.
        max_deliveries: deliveries after which a failing message is dead-lettered.
        prefix: Redis key prefix of the window state.
    """

    def __init__(self, repo: FeatureRepo, view: str, client: redis.Redis, online: OnlineStore,
                 offline: OfflineStore | None = None, *, group: str | None = None,
                 consumer: str | None = None, batch_size: int = 500,
                 claim_idle_ms: int = 30_000, max_deliveries: int = 5,
                 prefix: str = "mlray") -> None:
        self.bound = repo.bind(view)
        source = self.bound.view.source
        if not isinstance(source, StreamSource):
            raise InvalidInput(f"view {view!r} has no stream source", field="view")
        if batch_size < 1 or max_deliveries < 1 or claim_idle_ms < 0:
            raise InvalidInput("batch_size and max_deliveries must be >= 1, claim_idle_ms >= 0",
                               field="batch_size")
        self.source = source
        self.redis, self.online, self.offline = client, online, offline
        self.stream = source.stream
        self.dead_stream = f"{source.stream}:dead"
        own = f"{prefix}:{online.project}"  # this project's keys on the shared Redis
        self.group = group or f"{own}:{view}"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.batch_size, self.claim_idle_ms = batch_size, claim_idle_ms
        self.max_deliveries = max_deliveries
        self._state_key = f"{own}:win:{view}"
        self._version_key = f"{own}:winver:{view}"
        self._errors_key = f"{own}:streamerr:{view}"
        self.windows = WindowStore.for_view(self.bound.view)
        agg = set(self.windows.outputs)
        self._plain: list[FeatureField] = [f for f in self.bound.view.fields
                                           if f.name not in agg]
        self._versions: dict[bytes, int] = {}
        self._latest: dict[bytes, dict[str, Any]] = {}  # passthrough fields per entity
        self._cursor = "0-0"
        self.stats = StreamStats()
        with self._guard():
            self._commit_script = client.register_script(_COMMIT)
            try:
                client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _guard(self) -> _RedisGuard:
        return _RedisGuard(self.stream)

    # The loop.

    def run_once(self, block_ms: int | None = 1000) -> int:
        """Claim idle pending entries, read new ones, process them; returns how many were
        handled (acknowledged, dead-lettered or left pending after a failure).

        Raises:
            BackendUnavailable: Redis or a store cannot be reached (nothing is acked).
        """
        with self._guard():
            entries = self._claim()
            if len(entries) < self.batch_size:
                reply = self.redis.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"},
                    count=self.batch_size - len(entries),
                    block=None if entries or block_ms is None else max(block_ms, 1))
                for _, items in reply or []:
                    fresh = [(_str(i), dict(f or {})) for i, f in items]
                    self.stats.read += len(fresh)
                    entries += fresh
        if entries:
            self._process([_Event(i, f) for i, f in entries])
        return len(entries)

    def _claim(self) -> list[tuple[str, dict[bytes, bytes]]]:
        reply = self.redis.xautoclaim(self.stream, self.group, self.consumer,
                                      self.claim_idle_ms, start_id=self._cursor,
                                      count=self.batch_size)
        self._cursor = _str(reply[0])
        claimed = [(_str(i), dict(f)) for i, f in reply[1] if f is not None]
        gone = [_str(i) for i in (reply[2] if len(reply) > 2 else [])]
        if gone:  # trimmed from the stream while pending: nothing left to process
            self.redis.xack(self.stream, self.group, *gone)
        if not claimed:
            return []
        self.stats.claimed += len(claimed)
        pipe = self.redis.pipeline(transaction=False)
        for msg_id, _ in claimed:
            pipe.xpending_range(self.stream, self.group, min=msg_id, max=msg_id, count=1)
        pending = pipe.execute()
        keep, dead = [], []
        for (msg_id, fields), info in zip(claimed, pending, strict=True):
            times = int(info[0]["times_delivered"]) if info else 1
            (dead if times > self.max_deliveries else keep).append((msg_id, fields, times))
        if dead:
            errors = self.redis.hmget(self._errors_key, [m for m, _, _ in dead])
            self._dead_letter([(m, f, f"failed {t - 1} times; last error: "
                                + (_str(e) if e else "unknown")) for (m, f, t), e
                               in zip(dead, errors, strict=True)])
        return [(m, f) for m, f, _ in keep]

    def _process(self, events: list[_Event]) -> None:
        """Handle a batch; on a failure that is not the backend's, isolate each message."""
        try:
            self._handle(events)
        except BackendUnavailable:
            raise
        except Exception as exc:
            if len(events) > 1:
                for event in events:
                    self._process([event])
                return
            self.stats.failed += 1
            reason = f"{type(exc).__name__}: {exc}"
            with self._guard():
                self.redis.hset(self._errors_key, events[0].msg_id, reason[:2000])

    def _handle(self, events: list[_Event]) -> None:
        dead: list[tuple[str, dict[bytes, bytes], str]] = []
        good: list[_Event] = []
        for event in events:
            try:
                self._decode(event)
                good.append(event)
            except (InvalidInput, ValueError, TypeError, KeyError) as exc:
                dead.append((event.msg_id, event.fields, f"undecodable or invalid: {exc}"))
        if good and self.source.transform:
            self._transform(good)
        good, invalid = self._validate(good)
        dead += invalid
        for attempt in range(5):
            touched = {e.key for e in good}
            try:
                self._load(touched)
                self._apply(good)
                break
            except _Retry:
                self.stats.conflicts += 1
                self._forget(touched)
                if attempt == 4:
                    raise
            except BaseException:
                self._forget(touched)
                raise
        self._dead_letter(dead, ack=[e.msg_id for e in good])

    # Decoding, transforming and validating.

    def _decode(self, event: _Event) -> None:
        fields = event.fields
        raw = fields.get(EVENT_FIELD.encode())
        if raw is not None:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("the event body is not a JSON object")
            typed = True
        else:
            body = {_str(k): _str(v) for k, v in fields.items()}
            typed = False
        src = self.source
        parts = []
        for k in self.bound.join_keys:
            if k.name not in body:
                raise InvalidInput(f"missing join key {k.name!r}", field=k.name)
            v = body[k.name]
            parts.append(int(v) if k.dtype == "int64" and not typed and isinstance(v, str)
                         else v)
        event.parts = parts
        event.key = encode_key(self.bound, parts)
        if src.timestamp_field not in body:
            raise InvalidInput(f"missing {src.timestamp_field!r}", field=src.timestamp_field)
        event.ts_us = _parse_ts(body[src.timestamp_field], typed, src.timestamp_field)
        event.event_id = str(body.get(src.event_id_field) or event.msg_id)
        row = dict(body)
        if not typed:
            row = {k: _parse_text(v, self.bound.view.field(k)) for k, v in row.items()}
            for c in self.windows.columns:
                if c in row and isinstance(row[c], str):
                    row[c] = float(row[c]) if any(x in row[c] for x in ".eEn") else int(row[c])
        event.row = row

    def _transform(self, events: list[_Event]) -> None:
        fn = load_function(self.source.transform or "")
        frame = pd.DataFrame([e.row for e in events])
        out = fn(frame)
        if not isinstance(out, pd.DataFrame) or len(out) != len(events):
            raise InvalidInput(f"transform {self.source.transform} must return a DataFrame of "
                               f"{len(events)} rows", field="transform")
        for event, row in zip(events, out.to_dict("records"), strict=True):
            event.row = {str(k): v for k, v in row.items()}

    def _validate(self, events: list[_Event],
                  ) -> tuple[list[_Event], list[tuple[str, dict[bytes, bytes], str]]]:
        good, bad = [], []
        for event in events:
            try:
                event.values = self.windows.check_values(
                    [event.row.get(c) for c in self.windows.columns], "values")
                good.append(event)
            except InvalidInput as exc:
                bad.append((event.msg_id, event.fields, f"invalid: {exc}"))
        if self._plain and good:
            try:
                self._check_plain(good)
            except InvalidInput:
                kept = []
                for event in good:
                    try:
                        self._check_plain([event])
                        kept.append(event)
                    except InvalidInput as exc:
                        bad.append((event.msg_id, event.fields, f"invalid: {exc}"))
                good = kept
        return good, bad

    def _check_plain(self, events: list[_Event]) -> None:
        names = [f.name for f in self._plain]
        table = pa.Table.from_pylist([{n: e.row.get(n) for n in names} for e in events])
        check_fields(table, self._plain, f"view {self.bound.name!r}")

    # State, writes and commits.

    def _load(self, keys: set[bytes]) -> None:
        missing = [k for k in keys if k not in self._versions]
        if not missing:
            return
        with self._guard():
            pipe = self.redis.pipeline(transaction=False)
            pipe.hmget(self._state_key, missing)
            pipe.hmget(self._version_key, missing)
            blobs, versions = pipe.execute()
        for key, blob, version in zip(missing, blobs, versions, strict=True):
            state, latest = (None, None) if blob is None else msgpack.unpackb(blob, raw=False)
            self.windows.restore(key, state)
            if latest is not None:
                self._latest[key] = latest
            self._versions[key] = int(version or 0)

    def _forget(self, keys: Iterable[bytes]) -> None:
        for key in keys:
            self.windows.forget(key)
            self._versions.pop(key, None)
            self._latest.pop(key, None)

    def _apply(self, events: list[_Event]) -> None:
        offline_rows: dict[tuple[bytes, int], dict[str, Any]] = {}
        online_rows: dict[bytes, dict[str, Any]] = {}
        ts_field = self.source.timestamp_field
        for event in events:
            outcome = self.windows.add(event.key, event.ts_us, event.event_id, event.values)
            if outcome == Outcome.DUPLICATE:
                self.stats.duplicates += 1
                continue
            if outcome == Outcome.LATE:
                self.stats.late += 1
                continue
            self.stats.added += 1
            latest = self._latest.get(event.key)
            if latest is None or event.ts_us >= latest["_ts"]:
                latest = {"_ts": event.ts_us, **{f.name: event.row.get(f.name)
                                                 for f in self._plain}}
                self._latest[event.key] = latest
            newest = self.windows.newest(event.key)
            assert newest is not None
            row = dict(zip(self.bound.key_names, event.parts, strict=True))
            row[ts_field] = newest
            row.update({f.name: latest.get(f.name) for f in self._plain})
            row.update(self.windows.values(event.key))
            offline_rows[(event.key, newest)] = row
            online_rows[event.key] = row
        if online_rows:
            table = self._table(list(online_rows.values()))
            self.stats.rows_online += self.online.write(self.bound, table)
            if self.offline is not None:
                self.stats.rows_offline += self.offline.write(
                    self.bound.name, self._table(list(offline_rows.values())))
            self._commit(list(online_rows))

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        ts_field = self.source.timestamp_field
        cols: dict[str, pa.Array] = {}
        for k in self.bound.join_keys:
            cols[k.name] = pa.array([r[k.name] for r in rows],
                                    pa.int64() if k.dtype == "int64" else pa.string())
        cols[ts_field] = pa.array([r[ts_field] for r in rows], pa.int64()).cast(_TS)
        for f in self.bound.view.fields:
            cols[f.name] = pa.array([r[f.name] for r in rows], f.arrow_type)
        return pa.table(cols)

    def _commit(self, keys: list[bytes]) -> None:
        args: list[Any] = [len(keys)]
        for key in keys:
            latest = self._latest.get(key)
            blob = msgpack.packb([self.windows.snapshot(key), latest], use_bin_type=True)
            args += [key, self._versions.get(key, 0), blob]
        with self._guard():
            ok = self._commit_script(keys=[self._state_key, self._version_key], args=args)
        if not int(ok):
            raise _Retry()
        for key in keys:
            self._versions[key] = self._versions.get(key, 0) + 1

    def _dead_letter(self, dead: Sequence[tuple[str, dict[bytes, bytes], str]],
                     ack: Sequence[str] = ()) -> None:
        """Move ``dead`` entries to the dead-letter stream and ack them with ``ack``, at once."""
        ids = [*ack, *(m for m, _, _ in dead)]
        if not ids:
            return
        with self._guard():
            pipe = self.redis.pipeline(transaction=True)
            for msg_id, fields, error in dead:
                pipe.xadd(self.dead_stream, {**fields, "dead_error": error[:2000],
                                             "dead_id": msg_id, "dead_view": self.bound.name})
            pipe.xack(self.stream, self.group, *ids)
            pipe.hdel(self._errors_key, *ids)
            pipe.execute()
        self.stats.dead += len(dead)
        self.stats.acked += len(ids)

    def pending(self) -> int:
        """How many entries of the group are delivered but not yet acknowledged."""
        with self._guard():
            return int(self.redis.xpending(self.stream, self.group)["pending"])


class _RedisGuard:
    """Turns Redis errors into :class:`BackendUnavailable`, naming the stream."""

    def __init__(self, stream: str) -> None:
        self.stream = stream

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if isinstance(exc, redis.ResponseError):
            return False
        if isinstance(exc, redis.RedisError):
            raise BackendUnavailable(f"Redis for stream {self.stream}: {exc}") from exc
        return False


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_ts(value: Any, typed: bool, field: str) -> int:
    """Microseconds since the epoch from an ISO 8601 string with a zone or epoch seconds."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field}: expected a timestamp, got {value!r}", field=field)
    if isinstance(value, int | float):
        return round(value * 10**6)
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: expected a timestamp, got {value!r}", field=field)
    if not typed:
        try:
            return round(float(value) * 10**6)
        except ValueError:
            pass
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not an ISO 8601 timestamp",
                           field=field) from None
    if stamp.tzinfo is None:
        raise InvalidInput(f"{field}: {value!r} has no time zone", field=field)
    delta = stamp - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**6 + delta.microseconds


def _parse_text(value: str, f: FeatureField | None) -> Any:
    """A field-map value (text) as the field's type; unknown columns stay text."""
    if f is None:
        return value
    if f.dtype == "int64":
        return int(value)
    if f.dtype == "float64":
        return float(value)
    if f.dtype == "bool":
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidInput(f"{f.name}: {value!r} is not a bool", field=f.name)
        return value.lower() in ("true", "1")
    if f.dtype in ("array", "map"):
        return json.loads(value)
    return value.encode() if f.dtype == "bytes" else value

