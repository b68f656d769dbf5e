"""Serving throughput and latency: mlray's ingress against plain Ray Serve, side by side.

    .venv/bin/python bench/serving.py [--quick] [--seconds 10] [--batch-concurrency 8]
    .venv/bin/python bench/serving.py --overload 200,1000 [--seconds 20]
    .venv/bin/python bench/serving.py --auth [--seconds 10]

One run, one Ray (8 logical CPUs) and one Serve instance on a free port, the same
small fraud MLP and the same batching (``@serve.batch`` 64 requests / 2 ms, 0.5 CPU
per model replica) behind three targets:

- ``mlray``: the ``mlray`` ingress → the model app ``<project>--<model>--v1`` (deployed with
  ``client.serving.deploy(..., strategy="direct")``), ``POST /v1/predict/batch``;
- ``mlray colocated``: the same model registered under a second name whose serving
  settings say ``colocate: true``: the ingress replica answers from its own copy (same
  ``serve.batch`` tuning), with no hop to the model app;
- ``(a) plain``: one plain Ray Serve deployment of the model alone, ``POST /plain``;
- ``(b) composed``: a plain Ray Serve ingress deployment with a hand-written 90/10
  weighted router over two deployments of the same model (the composition pattern of
  Ray's docs), ``POST /composed``.

Every target gets the same JSON body (``{"modelName", "columns": {feature: [values]}}``,
the model name differing between the two mlray targets); the plain ones parse it with
orjson, as mlray does. Loads: single-row requests at
concurrency 1, 8 and 32, 256-row requests at ``--batch-concurrency``, and single-row
requests to both mlray targets at a fixed 100 requests/s (open loop). Last, what
monitoring costs (issue 6): the colocated model beside a third registration of it with
``monitor: false`` (no drift sketches, no prediction log), single-row at concurrency 32,
alternating twice. The load generator is ``wrk``
with a Lua body when installed, else aiohttp (the fixed-rate cell always uses aiohttp);
it runs on the same machine, so its CPU is taken from the servers. Before each cell a
target must answer 200 three times running (how long it refused is logged: a stopped
load generator's disconnects can trip a breaker). Ratios within one run
are the figures; the goals of issue 4 are checked at the end. Not asserted anywhere.

``--overload N[,M...]`` measures only overload (issue 11): N clients, each posting a
1-row request as soon as its last one was answered (after a refusal: its Retry-After, or
50 ms), for
``--seconds``, against ``mlray`` and ``(a) plain``, the bare baseline; every answer is
counted: p50/p99/max latency over all answers, statuses, 503s with ``Retry-After``, and
mlray's breaker states afterwards.

``--auth`` measures only what HTTP authentication costs (issue 13, see ``bench/_auth.py``):
single-row predictions at concurrency 1 and 32 through ``auth: none`` and ``auth: keys``
ingress apps side by side (ratios over none), and the key check on a cache miss.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "token")

import httpx
import numpy as np
import orjson
import ray
import torch
from ray import serve
from ray.serve.handle import DeploymentHandle
from rich.console import Console
from rich.table import Table
from starlette.requests import Request
from starlette.responses import Response

import mlray
from mlray.config import PlatformConfig, load_config
from mlray.datasets.fraud import FRAUD_CATEGORICAL, FRAUD_NUMERIC, generate_fraud
from mlray.models.predictor import Predictor, save_model
from mlray.monitoring.baseline import profile_frame
from mlray.registry.types import TensorSpec
from mlray.serving.launch import start_serving
from mlray.serving.loaded_model import Columns, VersionRunner, concat_columns, split_rows
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture, build_model

sys.path.insert(0, str(Path(__file__).parent))
from _auth import (
    CONCURRENCY,
    KEYED,
    AuthFigures,
    auth_tables,
    deploy_keyed,
    issue_key,
    key_check_ms,
)
from _load import LoadResult, OverloadResult, closed_loop, generator_name, open_loop, overload

console = Console(width=140)

MODEL, LOCAL_MODEL, UNMONITORED = "benchfraud", "benchlocal", "benchquiet"
MAX_BATCH, BATCH_WAIT_S, NUM_CPUS = 64, 0.002, 0.5
SINGLE_CONCURRENCY = (1, 8, 32)
BATCH_ROWS, OPEN_LOOP_RATE = 256, 100.0
MLRAY_TARGETS = {"mlray": MODEL, "mlray colocated": LOCAL_MODEL}
SERVING_YAML = f"""
defaults:
  num_cpus: {NUM_CPUS}
  tuning: {{max_batch_size: {MAX_BATCH}, batch_wait_timeout_s: {BATCH_WAIT_S}}}
models:
  {LOCAL_MODEL}: {{colocate: true}}
  {UNMONITORED}: {{colocate: true, monitor: false}}
ingress:
  max_rows: 1000
"""


# -- the model --------------------------------------------------------------------------------

def fraud_schema() -> list[TensorSpec]:
    """The fraud model's input schema."""
    return ([TensorSpec(name=c, dtype="float64") for c in FRAUD_NUMERIC]
            + [TensorSpec(name=c, dtype="string") for c in FRAUD_CATEGORICAL])


def train_model(directory: Path, epochs: int = 30) -> Path:
    """Fit the small fraud MLP (hidden [16]) in plain torch and save its model directory."""
    frame = generate_fraud(3000, seed=0)
    pre = Preprocessor.fit(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL)
    arch = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                             hidden=[16])
    torch.manual_seed(0)
    module = build_model(arch)
    x = torch.from_numpy(pre.transform(frame))
    y = torch.from_numpy(frame["is_fraud"].to_numpy(dtype=np.float32))
    optimiser = torch.optim.Adam(module.parameters(), lr=0.01)
    for _ in range(epochs):
        optimiser.zero_grad()
        torch.nn.functional.binary_cross_entropy_with_logits(module(x), y).backward()
        optimiser.step()
    with torch.no_grad():
        scores = torch.sigmoid(module(x)).numpy()
    baseline = profile_frame(frame, FRAUD_NUMERIC, FRAUD_CATEGORICAL, scores)
    return save_model(directory, module, arch, pre, baseline)


def request_body(rows: int, model: str = MODEL) -> bytes:
    """The JSON body every target gets: ``rows`` transactions as columns."""
    frame = generate_fraud(rows, seed=7)
    columns = {c: frame[c].tolist() for c in [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]}
    return orjson.dumps({"modelName": model, "columns": columns})


def target_body(target: str, rows: int) -> bytes:
    """``request_body`` naming the model the target serves."""
    return request_body(rows, MLRAY_TARGETS.get(target, MODEL))


# -- plain Ray Serve: (a) alone and (b) composed ----------------------------------------------

def body_columns(body: bytes) -> Columns:
    """A request body's columns as numpy arrays."""
    return {name: np.asarray(values) for name, values in orjson.loads(body)["columns"].items()}


def json_reply(probabilities: np.ndarray) -> Response:
    """The answer, shaped like mlray's: predictions and probabilities."""
    payload = {"predictions": (probabilities >= 0.5).astype(np.int8),
               "probabilities": probabilities}
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


@serve.deployment(max_ongoing_requests=256, ray_actor_options={"num_cpus": NUM_CPUS})
class PlainModel:
    """The model alone: HTTP in, one batched forward pass, HTTP out."""

    def __init__(self, model_dir: str) -> None:
        self.runner = VersionRunner(Predictor.from_directory(model_dir), fraud_schema())

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def predict(self, requests: list[Columns]) -> list[np.ndarray]:
        lengths = [len(next(iter(r.values()))) for r in requests]
        return split_rows(self.runner.predict(concat_columns(requests)), lengths)

    async def __call__(self, request: Request) -> Response:
        return json_reply(await self.predict(body_columns(await request.body())))


@serve.deployment(max_ongoing_requests=1024, ray_actor_options={"num_cpus": 0})
class WeightedRouter:
    """A hand-written ingress: picks a model deployment by weight and awaits its handle."""

    def __init__(self, stable: DeploymentHandle, canary: DeploymentHandle) -> None:
        self.handles, self.weights = [stable, canary], [90, 10]

    async def __call__(self, request: Request) -> Response:
        columns = body_columns(await request.body())
        handle = random.choices(self.handles, self.weights)[0]
        return json_reply(await handle.predict.remote(columns))


def deploy_plain(model_dir: Path) -> None:
    """Run (a) at ``/plain`` and (b) at ``/composed`` beside mlray's apps."""
    serve.run(PlainModel.bind(str(model_dir)), name="plain", route_prefix="/plain")
    stable = PlainModel.options(name="Stable").bind(str(model_dir))
    canary = PlainModel.options(name="Canary").bind(str(model_dir))
    serve.run(WeightedRouter.bind(stable, canary), name="composed", route_prefix="/composed")


# -- mlray ------------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def platform_config(home: Path) -> PlatformConfig:
    """A fresh platform (namespace, home, Serve port) with the bench's serving YAML."""
    (home / "serving.yaml").write_text(SERVING_YAML)
    return load_config(env={"MLRAY_HOME": str(home / "home"),
                            "MLRAY_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
                            "MLRAY_SERVE_PORT": str(free_port()),
                            "MLRAY_SERVING_CONFIG": str(home / "serving.yaml")})


def deploy_mlray(config: PlatformConfig, model_dir: Path) -> str:
    """Start the platform and its ingress, register and deploy the model under both
    names (app-served and colocated); the base URL."""
    client = mlray.connect(config=config)
    url = start_serving(config)
    for model in (*MLRAY_TARGETS.values(), UNMONITORED):
        client.registry.register(
            model, model_dir, input_schema=fraud_schema(), framework="torch",
            output_schema=[TensorSpec(name="probability", dtype="float32")])
        rollout = client.serving.deploy(model, 1, strategy="direct", wait=True, timeout_s=240)
        if rollout.status != "succeeded":
            raise RuntimeError(f"deploying {model} v1 did not succeed: {rollout.history}")
    return url


def wait_colocated(base: str, models: tuple[str, ...], timeout_s: float = 120) -> None:
    """Until the ingress has loaded its copies of the colocated ``models``."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as http:
        while time.monotonic() < deadline:
            for model in models:
                http.post(f"{base}/v1/predict/batch", content=request_body(1, model))
            served = {m["name"]: m for m in http.get(f"{base}/v1/models").json()["models"]}
            if all(m in served and served[m]["versions"][0]["colocated"] is not None
                   for m in models):
                return
            time.sleep(0.5)
    raise RuntimeError(f"the ingress did not load {models} within {timeout_s:g} s")


def wait_answering(urls: dict[str, str], rows: int, timeout_s: float = 60) -> None:
    """Until every target answers ``rows`` rows with 200; then check they agree."""
    answers: dict[str, list[float]] = {}
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=10) as http:
        for target, url in urls.items():
            body = target_body(target, rows)
            while (reply := http.post(url, content=body)).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target} answers {reply.status_code}: {reply.text}")
                time.sleep(0.2)
            answers[target] = reply.json()["probabilities"]
    first = next(iter(answers.values()))
    for target, probabilities in answers.items():
        if not np.allclose(probabilities, first, rtol=1e-5):
            raise RuntimeError(f"{target} predicts differently from the others")


# -- measuring and reporting ------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One figure of the table."""

    target: str
    load: str
    rows: int
    result: LoadResult

    @property
    def predictions_per_s(self) -> float:
        return self.result.requests_per_s * self.rows


def measure(urls: dict[str, str], seconds: float, batch_concurrency: int) -> list[Cell]:
    """Every closed-loop cell, the targets taking turns at each load; then the open loop."""
    loads = [(f"1 row, c={c}", 1, c) for c in SINGLE_CONCURRENCY]
    loads.append((f"{BATCH_ROWS} rows, c={batch_concurrency}", BATCH_ROWS, batch_concurrency))
    bodies = {(t, rows): target_body(t, rows) for t in urls for rows in (1, BATCH_ROWS)}
    for target, url in urls.items():  # warm the proxy, the routers and the batchers
        report(target, "warm-up, 1 row, c=32", closed_loop(url, bodies[target, 1], 32, 1))
    cells = []
    for label, rows, concurrency in loads:
        for target, url in urls.items():
            settle(target, url, bodies[target, 1])
            result = closed_loop(url, bodies[target, rows], concurrency, seconds)
            cells.append(Cell(target, label, rows, result))
            report(target, label, result)
    label = f"1 row, {OPEN_LOOP_RATE:g} req/s open loop"
    for target in MLRAY_TARGETS:
        settle(target, urls[target], bodies[target, 1])
        result = open_loop(urls[target], bodies[target, 1], OPEN_LOOP_RATE, seconds)
        cells.append(Cell(target, label, 1, result))
        report(target, label, result)
    return cells


def monitoring_cost(url: str, seconds: float, concurrency: int = 32, rounds: int = 2
                    ) -> tuple[float, float]:
    """Requests/s at ``concurrency`` of the colocated model with monitoring on and of the
    same model with ``monitor: false``, alternating ``rounds`` times (means)."""
    on, off = [], []
    bodies = {LOCAL_MODEL: request_body(1, LOCAL_MODEL), UNMONITORED: request_body(1, UNMONITORED)}
    for _ in range(rounds):
        for model, rates in ((LOCAL_MODEL, on), (UNMONITORED, off)):
            settle(model, url, bodies[model])
            result = closed_loop(url, bodies[model], concurrency, seconds)
            report(f"{model}", f"1 row, c={concurrency}", result)
            rates.append(result.requests_per_s)
    return float(np.mean(on)), float(np.mean(off))


def settle(target: str, url: str, body: bytes, timeout_s: float = 60,
           headers: dict[str, str] | None = None) -> None:
    """Until ``url`` answers 200 three times running; logs how long it refused before.

    A load generator stopping mid-request disconnects; a target that then refuses
    (mlray's breaker, say, until its half-open trials pass) would otherwise spoil the
    next cell's figures.
    """
    start = time.monotonic()
    answered, refusal = 0, ""
    with httpx.Client(timeout=10) as http:
        while answered < 3:
            reply = http.post(url, content=body, headers=headers)
            if reply.status_code == 200:
                answered += 1
                continue
            answered, refusal = 0, f"{reply.status_code} {reply.text[:120]}"
            if time.monotonic() - start > timeout_s:
                raise RuntimeError(f"{target} still refuses: {refusal}")
            time.sleep(0.2)
    if refusal:
        console.log(f"{target:>13} refused for {time.monotonic() - start:.1f} s after the "
                    f"previous cell ({refusal})")


def report(target: str, load: str, result: LoadResult) -> None:
    """One log line per cell, with the first failure when there were any."""
    failure = f"  first: {result.first_error}" if result.errors else ""
    console.log(f"{target:>13} {load:<26} {result.requests_per_s:9,.0f} req/s  "
                f"p99 {result.p99_ms:7.1f} ms  errors {result.errors}{failure}")


def find(cells: list[Cell], target: str, load: str) -> Cell | None:
    return next((c for c in cells if c.target == target and c.load == load), None)


def figures_table(cells: list[Cell], title: str) -> Table:
    table = Table(title=title)
    for col in ("target", "load", "req/s", "predictions/s", "p50 ms", "p99 ms", "errors",
                "thrpt / (b)", "p99 / (b)"):
        table.add_column(col, justify="left" if col in ("target", "load") else "right")
    for cell in cells:
        base = find(cells, "(b) composed", cell.load)
        ratios = ("", "")
        if base is not None and cell.target != "(b) composed":
            ratios = (f"{cell.result.requests_per_s / base.result.requests_per_s:.2f}",
                      f"{cell.result.p99_ms / base.result.p99_ms:.2f}")
        r = cell.result
        table.add_row(cell.target, cell.load, f"{r.requests_per_s:,.0f}",
                      f"{cell.predictions_per_s:,.0f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
                      str(r.errors), *ratios)
    return table


def goals_table(cells: list[Cell], cost: tuple[float, float]) -> Table:
    """Issue 4's goals and issue 6's monitoring cost, each measured with PASS/FAIL."""
    table = Table(title="goals (issues 4 and 6)")
    for col in ("target", "goal", "measured", ""):
        table.add_column(col)
    for target in MLRAY_TARGETS:
        _check_goals(table, cells, target)
    on, off = cost
    share = 1 - on / off
    table.add_row("mlray colocated", "monitoring costs ≤ 10% of throughput at c=32",
                  f"{on:,.0f} vs {off:,.0f} req/s off: {share:+.1%}",
                  "[green]PASS[/]" if share <= 0.10 else "[red]FAIL[/]")
    return table


def _check_goals(table: Table, cells: list[Cell], target: str) -> None:
    def check(goal: str, measured: str, ok: bool) -> None:
        table.add_row(target, goal, measured, "[green]PASS[/]" if ok else "[red]FAIL[/]")

    for cell in (c for c in cells if c.target == target and "open loop" not in c.load):
        base = find(cells, "(b) composed", cell.load)
        if base is None:
            continue
        ratio = cell.result.requests_per_s / base.result.requests_per_s
        check(f"{cell.load}: throughput ≥ 0.9x (b)", f"{ratio:.2f}x", ratio >= 0.9)
        ratio = cell.result.p99_ms / base.result.p99_ms
        check(f"{cell.load}: p99 ≤ 1.2x (b)", f"{ratio:.2f}x", ratio <= 1.2)
    batch = next(c for c in cells if c.target == target and c.rows == BATCH_ROWS)
    check(f"{BATCH_ROWS} rows: ≥ 100,000 predictions/s", f"{batch.predictions_per_s:,.0f}/s",
          batch.predictions_per_s >= 100_000)
    check(f"{BATCH_ROWS} rows: p99 < 100 ms", f"{batch.result.p99_ms:.1f} ms",
          batch.result.p99_ms < 100)
    fixed = next(c for c in cells if c.target == target and "open loop" in c.load)
    check(f"1 row at {OPEN_LOOP_RATE:g} req/s: p99 < 50 ms", f"{fixed.result.p99_ms:.1f} ms",
          fixed.result.p99_ms < 50 and fixed.result.errors == 0)


def measure_overload(urls: dict[str, str], base: str, clients: list[int], seconds: float
                     ) -> Table:
    """Overload cells: mlray and the bare baseline at each number of clients."""
    table = Table(title=f"overload: 1-row requests, {seconds:g} s per cell, all answers "
                        f"counted (mlray timeout_s 5)")
    for col in ("target", "clients", "200/s", "p50 ms", "p99 ms", "max ms", "statuses",
                "503 w/ Retry-After", "breakers after"):
        table.add_column(col, justify="left" if col in ("target", "statuses") else "right")
    for n in clients:
        for target in ("mlray", "(a) plain"):
            body = target_body(target, 1)
            settle(target, urls[target], body, timeout_s=120)
            result: OverloadResult = overload(urls[target], body, n, seconds)
            breakers = ""
            if target == "mlray":
                with httpx.Client(timeout=30) as http:
                    listed = http.get(f"{base}/v1/models").json()["models"]
                breakers = ",".join(v["breaker"] for m in listed if m["name"] == MODEL
                                    for v in m["versions"])
            statuses = " ".join(f"{k}:{v}" for k, v in sorted(result.statuses.items()))
            console.log(f"{target:>13} {n} clients: {statuses}, p99 "
                        f"{result.percentile(99):.0f} ms, max {result.max_ms:.0f} ms")
            table.add_row(target, str(n), f"{result.answered_per_s:,.0f}",
                          f"{result.percentile(50):.0f}", f"{result.percentile(99):.0f}",
                          f"{result.max_ms:.0f}", statuses, str(result.retry_after_503),
                          breakers)
    return table


def measure_auth(config: PlatformConfig, base: str, seconds: float, rounds: int = 2
                 ) -> list[Table]:
    """auth: keys beside auth: none (the same model app, a real predict key, the same
    request bytes to all), the targets taking turns ``rounds`` times; then the key check."""
    deploy_keyed(config)
    key = issue_key(config)
    headers = {"Authorization": f"Bearer {key}"}
    urls = {"none": f"{base}/v1/predict/batch",
            **{target: f"{base}{prefix}/v1/predict/batch" for target, (prefix, _) in KEYED.items()}}
    body = target_body("mlray", 1)
    for target, url in urls.items():
        settle(target, url, body, headers=headers)
        report(target, "warm-up, 1 row, c=32", closed_loop(url, body, 32, 1, headers))
    figures = AuthFigures({}, {})
    for concurrency in CONCURRENCY:
        for _ in range(rounds):
            for target, url in urls.items():
                settle(target, url, body, headers=headers)
                result = closed_loop(url, body, concurrency, seconds, headers)
                report(target, f"1 row, c={concurrency}", result)
                figures.add(target, concurrency, result.requests_per_s, result.p99_ms)
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return auth_tables(figures, key_check_ms(config, key, redis_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each cell.")
    parser.add_argument("--quick", action="store_true", help="3 s cells.")
    parser.add_argument("--batch-concurrency", type=int, default=8)
    parser.add_argument("--overload", default="",
                        help="Only overload cells at these client counts, e.g. 200,1000.")
    parser.add_argument("--auth", action="store_true",
                        help="Only auth: keys vs auth: none, and the key check (issue 13).")
    args = parser.parse_args()
    clients = [int(n) for n in args.overload.split(",") if n.strip()]
    seconds = 3.0 if args.quick else args.seconds
    home = Path(tempfile.mkdtemp(prefix="mlray-bench-serving-"))
    config = platform_config(home)
    ray.init(address="local", num_cpus=8, namespace=config.namespace, log_to_driver=False,
             include_dashboard=False)
    try:
        model_dir = train_model(home / "model")
        base = deploy_mlray(config, model_dir)
        deploy_plain(model_dir)
        wait_colocated(base, (LOCAL_MODEL, UNMONITORED))
        urls = {"mlray": f"{base}/v1/predict/batch",
                "mlray colocated": f"{base}/v1/predict/batch",
                "(a) plain": f"{base}/plain", "(b) composed": f"{base}/composed"}
        wait_answering(urls, 4)
        if clients:
            table = measure_overload(urls, base, clients, args.seconds)
            console.print(table)
            return
        if args.auth:
            for table in measure_auth(config, base, seconds):
                console.print(table)
            return
        console.log(f"load generator: {generator_name()} (open loop: aiohttp), "
                    f"{seconds:g} s per cell, {os.cpu_count()} cores")
        cells = measure(urls, seconds, args.batch_concurrency)
        cost = monitoring_cost(urls["mlray colocated"], seconds)
    finally:
        serve.shutdown()
        ray.shutdown()
    console.print(figures_table(cells, f"serving, {generator_name()}, {seconds:g} s per cell, "
                                       f"batch {MAX_BATCH} / {BATCH_WAIT_S * 1e3:g} ms "
                                       f"(ratios over (b) composed)"))
    console.print(goals_table(cells, cost))


if __name__ == "__main__":
    main()
