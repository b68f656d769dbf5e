"""Pipeline overhead: a no-op stage against a bare Ray task, and a cached re-run against
the first run of a small pipeline.

    python bench/pipelines.py [--stages 20] [--repeats 3] [--rows 400000]
    python bench/pipelines.py --retrain [--transactions 20000]

Per-stage overhead: a chain of ``--stages`` no-op stages (cache off, 1 CPU each, run by
the ``pipelines`` actor as Ray tasks) from the run's creation to its end as the run
record stores them, divided by the number of stages; beside it a chain of as many bare
no-op Ray tasks (1 CPU, ``ray.get`` each before the next), per task. Target: the
difference under 200 ms. Cached re-run: data -> fit -> evaluate (``--rows`` rows, a
bootstrap least-squares fit), first run against the same pipeline run again (every stage
CACHED), each as the client waits for it (wall) and as the run record times it. Target:
at least 10x. Medians over ``--repeats``. Not asserted anywhere.

``--retrain`` measures instead the offline part of the retraining pipeline itself
(``configs/pipelines/retrain-fraud.yaml``: quality -> training_set -> train -> evaluate ->
gates; canary, abtest and conclude need live traffic) on the data ``make demo`` prepares
(``--transactions`` rows, a Production version to compare against), first run against an
identical re-run, with each stage's time and state (bench/_retrain.py). Target: at least
10x. One pair of runs (a first run trains a model); Ray's output goes to
``<home>/bench-ray.log``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")

from rich.console import Console
from rich.table import Table

import mlray
from actors import start_actors
from mlray._private.ray_session import ensure_ray
from mlray.config import load_config
from mlray.pipelines.definitions import PipelineSpec

sys.path.insert(0, str(Path(__file__).parent))  # _pipeline_stages, for the actor and tasks

console = Console(width=120)
S = "_pipeline_stages:"


def bare_task_s(n: int) -> float:
    """Seconds per bare no-op Ray task, run one after another."""
    import ray

    @ray.remote(num_cpus=1)
    def noop() -> None:
        return None

    ray.get(noop.remote())  # warm a worker
    start = time.perf_counter()
    for _ in range(n):
        ray.get(noop.remote())
    return (time.perf_counter() - start) / n


def chain(n: int) -> PipelineSpec:
    stages = [{"name": f"s{i}", "kind": S + "noop", "cache": False,
               "depends_on": [f"s{i - 1}"] if i else []} for i in range(n)]
    return PipelineSpec.model_validate({"name": "noop-chain", "stages": stages})


def small(rows: int) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "small", "stages": [
        {"name": "data", "kind": S + "make_data", "params": {"rows": rows}},
        {"name": "fit", "kind": S + "fit", "depends_on": ["data"], "params": {"rounds": 20}},
        {"name": "evaluate", "kind": S + "evaluate", "depends_on": ["data", "fit"]}]})


def timed_run(client: mlray.Client, name: str, params: dict[str, object] | None = None
              ) -> tuple[float, float, dict[str, str]]:
    """(client wall s, run record s, stage states) of one run waited for."""
    start = time.perf_counter()
    run = client.pipelines.run(name, params, wait=True, timeout_s=600).run
    wall = time.perf_counter() - start
    assert run.state == "SUCCEEDED", run.message
    assert run.finished_at is not None
    return wall, run.finished_at - run.created_at, run.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--retrain", action="store_true",
                        help="measure the offline stages of retrain-fraud instead")
    parser.add_argument("--transactions", type=int, default=20_000,
                        help="generated transactions for --retrain")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mlray-bench-pipelines-"))
    config = load_config(env={"MLRAY_HOME": str(home)})
    ensure_ray("local", config.namespace, config.local_num_cpus)
    start_actors(config, timeout_s=900)  # a loaded machine starts the actors slowly
    client = mlray.connect("local", config=config)  # Ray is up: joins it and the actors
    if args.retrain:
        import _retrain

        console.print(f"home {home}; load {os.getloadavg()[0]:.1f}")
        _retrain.bench(client, args.transactions, console, home / "bench-ray.log")
        return

    client.pipelines.allow_code(allow=[S.rstrip(":")])  # stage code runs only if allowed
    bare = statistics.median(bare_task_s(args.stages) for _ in range(args.repeats))
    client.pipelines.apply([chain(args.stages)])
    timed_run(client, "noop-chain")  # warm: workers, imports
    per_stage = statistics.median(timed_run(client, "noop-chain")[1] / args.stages
                                  for _ in range(args.repeats))
    table = Table(title=f"per stage, a chain of {args.stages} no-op stages "
                        f"(median of {args.repeats}; load {os.getloadavg()[0]:.1f})")
    for col in ("bare Ray task", "pipeline stage", "overhead", "target"):
        table.add_column(col, justify="right")
    table.add_row(f"{bare * 1000:.1f} ms", f"{per_stage * 1000:.1f} ms",
                  f"{(per_stage - bare) * 1000:.1f} ms", "< 200 ms")
    console.print(table)

    client.pipelines.apply([small(args.rows)])
    firsts, cached = [], []
    for seed in range(args.repeats):  # a new seed: nothing cached, then all cached
        spec = small(args.rows).model_copy(deep=True)
        spec.stages[0].params["seed"] = seed
        client.pipelines.apply([spec])
        firsts.append(timed_run(client, "small"))
        again = timed_run(client, "small")
        assert set(again[2].values()) == {"CACHED"}, again[2]
        cached.append(again)
    table = Table(title=f"small pipeline (data -> fit -> evaluate, {args.rows:,} rows; "
                        f"median of {args.repeats})")
    for col in ("", "first run", "cached re-run", "speed-up", "target"):
        table.add_column(col, justify="right")
    for label, index in (("client wall", 0), ("run record", 1)):
        first = statistics.median(r[index] for r in firsts)
        again_s = statistics.median(r[index] for r in cached)
        table.add_row(label, f"{first * 1000:.0f} ms", f"{again_s * 1000:.0f} ms",
                      f"{first / again_s:.1f}x", ">= 10x")
    console.print(table)


if __name__ == "__main__":
    main()
