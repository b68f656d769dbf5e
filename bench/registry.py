"""Registry and tracker throughput through the client, against a bare actor call.

    python bench/registry.py [--backend sqlite|redis|both] [--ops 2000] [--runs 100000]

Prints, per backend: registry reads/s and writes/s next to a no-op actor call made in
the same run (the ratio is the figure), tracker points/s for batched metric logging,
and the latency of a run search over ``--runs`` runs. Not asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")

import ray
from rich.console import Console
from rich.table import Table

import mlray
from mlray.config import load_config
from mlray.registry.types import VersionSpec
from mlray.storage import open_state_store
from mlray.storage.base import Put
from mlray.storage.redis import RedisStateStore
from mlray.tracking.types import MetricPoint, Run

console = Console(width=130)


@ray.remote(num_cpus=0)
class Noop:
    """The baseline: an actor method that does nothing."""

    def invoke(self, *args: object, **kwargs: object) -> None:
        return None


def rate(fn: Callable[[], object], n: int) -> tuple[float, float]:
    """(calls per second, median latency in ms) of ``n`` sequential calls."""
    lat = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return n / (time.perf_counter() - start), statistics.median(lat) * 1e3


def seed_runs(url: str, prefix: str, count: int) -> None:
    """Write ``count`` finished runs straight into the store, in atomic batches of 1000."""
    store = open_state_store(url, redis_prefix=prefix)
    now = time.time()
    for base in range(0, count, 1000):
        ops = []
        for i in range(base, min(base + 1000, count)):
            run = Run(run_id=f"seed{i:07d}", project="default", experiment=f"exp{i % 20}",
                      name=f"r{i}", user="bench", start_time=now + i, status="FINISHED",
                      params={"lr": 10 ** -(i % 5), "layers": i % 7},
                      metrics={"loss": {"value": (i % 997) / 997, "step": 9, "timestamp": now}})
            ops.append(Put(collection="runs", key=run.run_id, data=run.model_dump(mode="json")))
        store.apply(ops)
    store.close()


def bench_backend(name: str, url: str, ops: int, runs: int, table: Table) -> None:
    home = Path(tempfile.mkdtemp(prefix=f"mlray-bench-{name}-"))
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    config = load_config(env={"MLRAY_HOME": str(home), "MLRAY_STATE_URL": url,
                              "MLRAY_REDIS_PREFIX": prefix,
                              "MLRAY_NAMESPACE": f"bench{uuid.uuid4().hex[:6]}"})
    seed_runs(config.resolved_state_url, prefix, runs)
    t = time.perf_counter()
    client = mlray.connect(config=config)
    load_s = time.perf_counter() - t
    noop = Noop.remote()
    ray.get(noop.invoke.remote())

    weights = home / "w.bin"
    weights.write_bytes(os.urandom(1024))
    ref = client.artifacts.put(weights)
    spec = VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256)
    client.registry.create_model("bench")
    client.registry.create_version("bench", spec)

    base_rate, base_ms = rate(lambda: ray.get(noop.invoke.remote("get", 1)), ops)
    read_rate, read_ms = rate(lambda: client.registry.get_version("bench", 1), ops)
    write_rate, write_ms = rate(lambda: client.registry.create_version("bench", spec), ops // 4)
    run = client.experiments.start_run("bench-metrics")
    batch = [MetricPoint(key=f"m{k}", value=0.5, step=s) for s in range(100) for k in range(10)]
    log_rate, _ = rate(lambda: client.experiments.log_metrics(run.run_id, batch), 50)
    search = []
    for _ in range(5):
        t = time.perf_counter()
        page = client.experiments.search_runs(filter="metrics.loss < 0.5 and params.lr >= 0.01",
                                              order_by=["metrics.loss ASC"], limit=100)
        search.append(time.perf_counter() - t)
    total = page.total

    table.add_row(name, "bare no-op actor call", f"{base_rate:,.0f}/s", f"{base_ms:.2f}", "1.00")
    table.add_row(name, "registry read (get_version)", f"{read_rate:,.0f}/s", f"{read_ms:.2f}",
                  f"{read_ms / base_ms:.2f}")
    table.add_row(name, "registry write (create_version)", f"{write_rate:,.0f}/s",
                  f"{write_ms:.2f}", f"{write_ms / base_ms:.2f}")
    table.add_row(name, "metric logging, batches of 1000", f"{log_rate * len(batch):,.0f} pts/s",
                  "", "")
    table.add_row(name, f"search {runs:,} runs ({total:,} match)",
                  f"median {statistics.median(search) * 1e3:.0f} ms", "", "")
    table.add_row(name, f"tracker start with {runs:,} runs", f"{load_s:.1f} s", "", "")
    for actor in ("registry", "experiments"):
        ray.kill(ray.get_actor(actor, namespace=config.namespace), no_restart=True)
    if url.startswith("redis"):
        RedisStateStore(url, prefix=prefix).drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    ray.init(address="local", num_cpus=4, log_to_driver=False)
    table = Table(title="mlray registry and tracker (ratio = latency / bare actor call)")
    for col in ("backend", "operation", "throughput", "median ms", "ratio"):
        table.add_column(col)
    backends = ["sqlite", "redis"] if args.backend == "both" else [args.backend]
    for backend in backends:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db" if backend == "sqlite" else args.redis_url
        bench_backend(backend, url, args.ops, args.runs, table)
    console.print(table)


if __name__ == "__main__":
    main()
