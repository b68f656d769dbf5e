"""Feature store benchmarks, each beside a bare baseline measured in the same run.

    .venv/bin/python bench/features.py [--quick | --full] [--redis-url URL] [--no-ray]

One table, four areas (issue 5's goals checked at the end of each row):

- online: ``FeatureReader.get_online_features`` for 1, 100 and 1,000 entities x 50
  features (5 views x 10 float64) on Redis, p50/p99, beside a bare redis-py read of the
  same keys (one pipeline of one ``MGET`` per view, the packed values left undecoded).
  Goals: 100 x 50 p50 <= 1 ms and p99 <= 3 ms; 1,000 x 50 p99 <= 10 ms; p50 within
  1.5x of the bare read.
- offline: a point-in-time join of N entity rows against M feature rows (3 views, one
  with a TTL; integer-second times so ties happen, broken by a created time) with
  ``OfflineStore.get_historical_features`` from the date-partitioned Parquet, beside
  pandas (``read_parquet``, the sorts ``merge_asof`` needs, ``merge_asof`` per view with
  ``by``/``tolerance``, and the re-sort to input order). Each runs in its own process;
  peak memory is the growth of the resident set over the join, sampled every 2 ms
  (entity rows already loaded).
  The outputs must be identical. Goal: faster than pandas. Sizes: default 200k x 2M,
  ``--quick`` 20k x 200k, ``--full`` the issue's 1M x 10M.
- materialize: 100,000 entities x 5 views (500,000 rows; ``--quick`` 10,000) offline →
  Redis with :func:`mlray.features.materialize.materialize` (``engine="local"``, and
  ``engine="ray"``, the job's default, unless ``--no-ray``; timed on a warm Ray, after a
  first run that starts its worker processes, whose time is shown apart), beside a bare
  write of the same values: the rows already in memory, packed as the store packs them
  and ``SET`` in a pipeline. Goal: within 2x.
- streams: events/s through :class:`StreamProcessor` (windows: count/sum over 1h, avg
  over 1d; online writes), beside a bare ``XREADGROUP``/``XACK`` loop that does no work.

Keys use a unique prefix and are deleted afterwards. Not asserted anywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "token")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgpack
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import redis
from rich.console import Console

from bench._report import print_table
from mlray._private.validation import build
from mlray.features import FeatureReader, FeatureRepo, OfflineStore, StreamProcessor, publish
from mlray.features.materialize import materialize
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.rowcodec import header, pack_columns

console = Console(width=150)
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
TS = pa.timestamp("us", "UTC")
VIEWS, FIELDS = 5, 10
Row = tuple[str, str, str, str, str, str, str]


# -- definitions ------------------------------------------------------------------------------

def wide_repo(root: str = "") -> FeatureRepo:
    """5 views x 10 float64 features about ``user`` (push sources), and a stream view."""
    views: list[dict[str, Any]] = [
        {"name": f"v{v}", "entities": ["user"], "source": {"type": "push"},
         "fields": [{"name": f"f{v}_{j}", "dtype": "float64"} for j in range(FIELDS)]}
        for v in range(VIEWS)]
    views.append({
        "name": "velocity", "entities": ["customer"], "ttl": "1d",
        "source": {"type": "stream", "stream": f"{root}:tx"},
        "aggregations": [{"function": "count", "window": "1h", "name": "n_1h"},
                         {"column": "amount", "function": "sum", "window": "1h"},
                         {"column": "amount", "function": "avg", "window": "1d"}],
        "fields": [{"name": "n_1h", "dtype": "int64"},
                   {"name": "amount_sum_1h", "dtype": "float64"},
                   {"name": "amount_avg_1d", "dtype": "float64"},
                   {"name": "merchant", "dtype": "string"}]})
    return build(FeatureRepo, entities=[
        {"name": "user", "join_keys": [{"name": "user_id"}]},
        {"name": "customer", "join_keys": [{"name": "customer_id"}]}], feature_views=views)


def wide_rows(view: int, entities: int, rng: np.random.Generator) -> pa.Table:
    """One row per entity for view ``v<view>``, times within the first day."""
    cols: dict[str, Any] = {
        "user_id": np.arange(entities, dtype=np.int64),
        "event_timestamp": pa.array(
            T0 + pd.to_timedelta(rng.integers(0, 86_400, entities), unit="s"), TS)}
    for j in range(FIELDS):
        cols[f"f{view}_{j}"] = rng.random(entities)
    return pa.table(cols)


def percentiles(fn: Callable[[], object], iters: int) -> tuple[float, float]:
    """(p50, p99) in ms of ``iters`` calls after a warm-up."""
    for _ in range(min(50, iters)):
        fn()
    lat = np.empty(iters)
    for i in range(iters):
        t = time.perf_counter()
        fn()
        lat[i] = time.perf_counter() - t
    return float(np.percentile(lat, 50) * 1e3), float(np.percentile(lat, 99) * 1e3)


def verdict(ok: bool) -> str:
    return "[green]PASS[/green]" if ok else "[red]FAIL[/red]"


# -- online -----------------------------------------------------------------------------------

def bench_online(url: str, prefix: str, quick: bool) -> list[Row]:
    repo = wide_repo(prefix)
    store = RedisOnlineStore(url, project="default", prefix=prefix)
    rng = np.random.default_rng(1)
    for v in range(VIEWS):
        store.write(repo.bind(f"v{v}"), wide_rows(v, 1000, rng))
    reader = FeatureReader(repo, store)
    refs = [f"v{v}:f{v}_{j}" for v in range(VIEWS) for j in range(FIELDS)]
    bare = redis.Redis.from_url(url)
    rows: list[Row] = []
    for n, iters in ((1, 2000), (100, 1000), (1000, 200)):
        iters = iters // 5 if quick else iters
        entity_rows = {"user_id": list(range(n))}
        got = reader.get_online_features(entity_rows, refs)
        assert int(got.status.min()) == 1, "every value should be PRESENT"
        keys = [[f"{prefix}:fv:v{v}:".encode() + msgpack.packb([i]) for i in range(n)]
                for v in range(VIEWS)]

        def bare_read(keys: list[list[bytes]] = keys) -> object:
            pipe = bare.pipeline(transaction=False)
            for chunk in keys:
                pipe.mget(chunk)
            return pipe.execute()

        assert all(x is not None for r in bare_read() for x in r)
        m50, m99 = percentiles(lambda e=entity_rows: reader.get_online_features(e, refs), iters)
        b50, b99 = percentiles(bare_read, iters)
        ratio = m50 / b50
        goal, ok = "p50 within 1.5x", ratio <= 1.5
        if n == 100:
            goal, ok = "p50<=1ms p99<=3ms, 1.5x", ok and m50 <= 1 and m99 <= 3
        elif n == 1000:
            goal, ok = "p99<=10ms, 1.5x", ok and m99 <= 10
        rows.append(("online", f"get_online_features {n:,} x 50",
                     f"p50 {m50:.2f} / p99 {m99:.2f} ms",
                     f"MGET: p50 {b50:.2f} / p99 {b99:.2f} ms",
                     f"{ratio:.2f} / {m99 / b99:.2f}", goal, verdict(ok)))
    bare.close()
    store.drop_all()
    store.close()
    return rows


# -- offline point-in-time join (each side in its own process) ---------------------------------

PIT_TTLS = (0, "2d", 0)


def pit_repo() -> FeatureRepo:
    return build(FeatureRepo, entities=[{"name": "user", "join_keys": [{"name": "user_id"}]}],
                 feature_views=[{
                     "name": f"p{v}", "entities": ["user"], "ttl": PIT_TTLS[v],
                     "source": {"type": "push", "created_timestamp_field": "created"},
                     "fields": [{"name": f"a{v}", "dtype": "float64"},
                                {"name": f"b{v}", "dtype": "float64"}]} for v in range(3)])


def pit_data(directory: Path, n: int, m: int) -> None:
    """Entity rows (``entities.parquet``) and 3 views of ``m // 3`` rows (offline store)."""
    rng = np.random.default_rng(7)
    keys = max(n // 10, 1)
    span = 30 * 86_400
    offline = OfflineStore(str(directory / "offline"), pit_repo(), project="default")
    for v in range(3):
        per = m // 3
        for lo in range(0, per, 2_000_000):
            k = min(2_000_000, per - lo)
            offline.write(f"p{v}", pa.table({
                "user_id": rng.integers(0, keys, k),
                "event_timestamp": pa.array(T0 + pd.to_timedelta(
                    rng.integers(0, span, k), unit="s"), TS),
                "created": pa.array(T0 + pd.to_timedelta(rng.integers(0, 10**6, k), unit="s"),
                                    TS),
                f"a{v}": rng.random(k), f"b{v}": rng.normal(size=k)}))
    pq.write_table(pa.table({
        "row": np.arange(n, dtype=np.int64),
        "user_id": rng.integers(0, int(keys * 1.1) + 1, n),
        "event_timestamp": pa.array(T0 + pd.to_timedelta(
            rng.integers(0, span + 86_400, n), unit="s"), TS)}), directory / "entities.parquet")


class PeakRss:
    """The peak growth of this process's resident memory, sampled every 2 ms in a thread."""

    def __init__(self) -> None:
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._base = self._peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self._page

    def _run(self) -> None:
        while not self._done.wait(0.002):
            self._peak = max(self._peak, self._rss())

    def stop(self) -> int:
        """Bytes above the starting RSS at the peak."""
        self._done.set()
        self._thread.join()
        return max(self._peak, self._rss()) - self._base


def pit_worker(engine: str, directory: Path) -> None:
    """In a subprocess: run one join, print its seconds and peak memory growth as JSON."""
    entities = pq.read_table(directory / "entities.parquet")
    refs = [f"p{v}:*" for v in range(3)]
    if engine == "pandas":
        left0 = entities.to_pandas()
        left0["event_timestamp"] = left0["event_timestamp"].astype("datetime64[ns, UTC]")
    sampler = PeakRss()
    t = time.perf_counter()
    if engine == "mlray":
        store = OfflineStore(str(directory / "offline"), pit_repo(), project="default")
        out = store.get_historical_features(entities, refs, full_feature_names=True)
        result = out.select([f"p{v}__{c}{v}" for v in range(3) for c in "ab"]).to_pandas()
    else:
        left = left0.sort_values("event_timestamp", kind="stable")
        for v in range(3):
            right = pd.read_parquet(directory / "offline" / f"p{v}",
                                    columns=["user_id", "event_timestamp", "created",
                                             f"a{v}", f"b{v}"])
            right = right.sort_values(["event_timestamp", "created"], kind="stable")
            right = right.rename(columns={"event_timestamp": "_ts", f"a{v}": f"p{v}__a{v}",
                                          f"b{v}": f"p{v}__b{v}"}).drop(columns="created")
            ttl = pd.Timedelta(PIT_TTLS[v]) if PIT_TTLS[v] else None
            left = pd.merge_asof(left, right, left_on="event_timestamp", right_on="_ts",
                                 by="user_id", direction="backward", allow_exact_matches=True,
                                 tolerance=ttl).drop(columns="_ts")
        result = left.sort_values("row").reset_index(drop=True)[
            [f"p{v}__{c}{v}" for v in range(3) for c in "ab"]]
    seconds = time.perf_counter() - t
    peak_mb = sampler.stop() / 2**20
    result.to_parquet(directory / f"out-{engine}.parquet")
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def bench_offline(n: int, m: int, workdir: Path) -> list[Row]:
    directory = workdir / "pit"
    directory.mkdir()
    t = time.perf_counter()
    pit_data(directory, n, m)
    console.log(f"offline data: {n:,} entity rows, {m:,} feature rows "
                f"({time.perf_counter() - t:.0f} s to write)")
    figures = {}
    for engine in ("mlray", "pandas"):
        done = subprocess.run([sys.executable, __file__, "--pit-worker", engine,
                               "--dir", str(directory)], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise RuntimeError(f"{engine} join failed:\n{done.stderr[-3000:]}")
        figures[engine] = json.loads(done.stdout.strip().splitlines()[-1])
    ours = pd.read_parquet(directory / "out-mlray.parquet").to_numpy(dtype=float)
    theirs = pd.read_parquet(directory / "out-pandas.parquet").to_numpy(dtype=float)
    same = ours.shape == theirs.shape and bool(np.array_equal(ours, theirs, equal_nan=True))
    matched = float(np.mean(~np.isnan(ours))) if ours.size else 0.0
    mine, base = figures["mlray"], figures["pandas"]
    ratio = mine["seconds"] / base["seconds"]
    return [("offline", f"PIT join {n:,} x {m:,} (3 views)",
             f"{mine['seconds']:.2f} s, +{mine['peak_mb']:,.0f} MiB",
             f"merge_asof: {base['seconds']:.2f} s, +{base['peak_mb']:,.0f} MiB",
             f"{ratio:.2f}", "faster, identical",
             verdict(ratio < 1 and same) + ("" if same else " (outputs differ)")
             + f" {matched:.0%} matched")]


# -- materialization --------------------------------------------------------------------------

def bench_materialize(url: str, prefix: str, entities: int, workdir: Path,
                      use_ray: bool) -> list[Row]:
    repo = wide_repo(prefix)
    offline = OfflineStore(str(workdir / "mat"), repo, project="default")
    rng = np.random.default_rng(3)
    for v in range(VIEWS):
        offline.write(f"v{v}", wide_rows(v, entities, rng))
    total = entities * VIEWS
    views = [f"v{v}" for v in range(VIEWS)]
    end = T0 + dt.timedelta(days=2)

    # Bare: the same rows, already in memory, packed as the store packs them, pipelined SETs.
    tables = {v: offline.read(v) for v in views}
    client = redis.Redis.from_url(url)
    t = time.perf_counter()
    for v, table in tables.items():
        head = f"{prefix}-bare:fv:{v}:".encode()
        ids = table["user_id"].to_pylist()
        ts = (table["event_timestamp"].cast(pa.int64()).to_numpy() // 1000).tolist()
        bound = repo.bind(v)
        payloads = pack_columns(bound, {c: table[c] for c in bound.view.feature_names})
        pipe = client.pipeline(transaction=False)
        for i, uid in enumerate(ids):
            pipe.set(head + msgpack.packb([uid]), header(ts[i]) + payloads[i])
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()
    bare_s = time.perf_counter() - t
    bare_rate = total / bare_s

    rows: list[Row] = []
    engines = ["local", "ray"] if use_ray else ["local"]
    for engine in engines:
        store = RedisOnlineStore(url, project="default", prefix=f"{prefix}-{engine}")
        if engine == "ray":
            import ray

            ray.init(address="local", num_cpus=max(os.cpu_count() or 2, 2),
                     include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
            ray.data.DataContext.get_current().enable_progress_bars = False
        cold = ""
        if engine == "ray":  # a first run starts Ray's worker processes: timed apart
            warm_store = RedisOnlineStore(url, project="default", prefix=f"{prefix}-warm")
            t = time.perf_counter()
            materialize(repo, offline, warm_store, views=views, end=end, engine=engine)
            cold = f"; first run {time.perf_counter() - t:.1f} s"
            warm_store.drop_all()
            warm_store.close()
        t = time.perf_counter()
        moved = sum(r.rows for r in materialize(repo, offline, store, views=views, end=end,
                                                engine=engine))
        took = time.perf_counter() - t
        if engine == "ray":
            ray.shutdown()
        assert moved == total, (moved, total)
        rate = total / took
        label = "Ray Data, warm" if engine == "ray" else "plain"
        rows.append(("materialize", f"{entities:,} x {VIEWS} views → Redis ({label})",
                     f"{rate:,.0f} rows/s ({took:.1f} s{cold})",
                     f"pipelined SET: {bare_rate:,.0f} rows/s ({bare_s:.1f} s)",
                     f"{took / bare_s:.2f}", "within 2x", verdict(took / bare_s <= 2)))
        store.drop_all()
        store.close()
    for key in client.scan_iter(match=f"{prefix}-bare:*", count=1000):
        client.delete(key)
    client.close()
    return rows


# -- streams ----------------------------------------------------------------------------------

def bench_streams(url: str, prefix: str, events: int) -> list[Row]:
    repo = wide_repo(prefix)
    client = redis.Redis.from_url(url)
    rng = np.random.default_rng(5)
    customers = rng.integers(0, 1000, events)
    amounts = np.round(rng.random(events) * 100, 2)
    batch = [{"customer_id": int(customers[i]),
              "event_timestamp": T0 + dt.timedelta(seconds=i),
              "event_id": f"e{i}", "amount": float(amounts[i]),
              "merchant": "shop" if i % 3 else "fuel"} for i in range(events)]
    stream = f"{prefix}:tx"
    for lo in range(0, events, 5000):
        publish(client, stream, batch[lo:lo + 5000])
    online = RedisOnlineStore(url, project="default", prefix=prefix)
    processor = StreamProcessor(repo, "velocity", client, online, None, prefix=prefix,
                                batch_size=500)
    t = time.perf_counter()
    handled = 0
    while handled < events:
        handled += processor.run_once(block_ms=None)
    ours = time.perf_counter() - t
    assert processor.stats.acked == events, processor.stats

    bare_stream = f"{prefix}:bare"
    for lo in range(0, events, 5000):
        publish(client, bare_stream, batch[lo:lo + 5000])
    client.xgroup_create(bare_stream, "g", id="0")
    t = time.perf_counter()
    handled = 0
    while handled < events:
        reply = client.xreadgroup("g", "c", {bare_stream: ">"}, count=500)
        ids = [i for _, items in reply or [] for i, _ in items]
        if ids:
            client.xack(bare_stream, "g", *ids)
        handled += len(ids)
    bare = time.perf_counter() - t
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        client.delete(key)
    online.close()
    client.close()
    return [("streams", f"{events:,} events, windows on (count/sum 1h, avg 1d)",
             f"{events / ours:,.0f} events/s", f"XREADGROUP/XACK: {events / bare:,.0f} events/s",
             f"{ours / bare:.2f}", "(none)", "")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="A fast smoke run.")
    size.add_argument("--full", action="store_true", help="The issue's sizes (1M x 10M join).")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    parser.add_argument("--no-ray", action="store_true", help="Skip the Ray Data engine.")
    parser.add_argument("--pit-worker", choices=["mlray", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pit_worker:
        pit_worker(args.pit_worker, args.dir)
        return
    n, m = (20_000, 200_000) if args.quick else (1_000_000, 10_000_000) if args.full \
        else (200_000, 2_000_000)
    entities = 10_000 if args.quick else 100_000
    events = 3_000 if args.quick else 20_000
    prefix = f"bench-feat-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="mlray-bench-features-"))
    rows: list[Row] = []
    try:
        rows += bench_online(args.redis_url, prefix, args.quick)
        console.log("online done")
        rows += bench_offline(n, m, workdir)
        console.log("offline done")
        rows += bench_materialize(args.redis_url, prefix, entities, workdir, not args.no_ray)
        console.log("materialize done")
        rows += bench_streams(args.redis_url, prefix, events)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        client = redis.Redis.from_url(args.redis_url)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
    print_table(console, f"mlray feature store (ratio = mlray / baseline time; "
                         f"{os.cpu_count()} CPUs)",
                ("area", "case", "mlray", "baseline", "ratio", "goal", "result"), rows)


if __name__ == "__main__":
    main()
