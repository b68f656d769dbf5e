"""The quickstart demo (``make demo``).

On a local platform (local Ray, SQLite and files under ``MLRAY_HOME``): generate a
fraud dataset, train the fraud MLP on Ray Train with two workers, run a short Ray Tune
sweep, register both models with their gates, promote the better one to Production,
load it back from its registry URI and score a few transactions. Then serve: start the
``mlray`` ingress on Ray Serve, deploy v1, send traffic over HTTP while v2 goes through
a canary rollout to 100%, and print per-version counts and latencies. Last, monitor:
replay ordinary and then drifted traffic, print the drift table, watch the drift alert
go pending → firing and write the HTML drift report. Last, the loop closes: the drift
alert starts the retraining pipeline (``configs/pipelines/retrain-fraud.yaml``) by
itself; its new version is scored beside Production, gated, deployed as a shadow, A/B
tested against Production on labels fed back over HTTP, and promoted or rolled back.

The demo starts its own local Ray (``address="local"``, unless ``MLRAY_RAY_ADDRESS``
names a cluster) and shuts it down at the end. On a shared Redis it writes only under
its own key prefix (``mlray-demo-<random>``), says which, and removes those keys when it
ends. Ray's own output (Ray Data progress, raylet warnings, Tune's banner) goes to
``<home>/demo-ray.log``, not the screen.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import mlray
from jobs import _demo_features as features
from jobs import _demo_loop as loop
from jobs import _demo_monitoring as monitoring
from mlray._private.quiet import quiet_ray_env
from mlray._private.ray_head import port_free
from mlray._private.redact import redact
from mlray.datasets import example_transactions, write_fraud
from mlray.models import load
from mlray.registry.types import ModelVersion, Stage
from mlray.training.config import TrainConfig, load_train_config
from mlray.training.orchestrator import run_training
from mlray.training.tuning import run_tuning

console = Console(width=110)
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "train" / "fraud.yaml"
SERVING = ROOT / "configs" / "demo" / "serving.yaml"
ALERTS = ROOT / "configs" / "demo" / "alerts.yaml"


def _config(entities: Path) -> TrainConfig:
    """The example training config, sized for a laptop, reading its training set as the
    fraud feature service joined point-in-time onto the transactions at ``entities``."""
    base = load_train_config(CONFIG)
    tune = base.tune.model_copy(update={"num_samples": 2}) if base.tune else None
    return base.model_copy(update={
        "data": base.data.model_copy(update={"path": str(entities),
                                             "feature_service": features.SERVICE}),
        "hyperparameters": base.hyperparameters.model_copy(update={"epochs": 5}),
        "tune": tune})


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=console)


def _gates(version: ModelVersion) -> str:
    report = version.validation
    if report is None:
        return "no gates"
    return "; ".join(f"{'ok' if r.passed else 'FAIL'} {r.name}" for r in report.results)


async def _traffic(url: str, model: str, rows: list[dict[str, object]], until: asyncio.Event,
                   seen: dict[int, list[float]], errors: dict[int, Counter[str]],
                   clients: int = 8) -> None:
    """POST /v1/predict from ``clients`` concurrent clients until ``until`` is set; latencies
    by the version that answered (or minus the HTTP status), error messages by status."""
    async def one_client(http: httpx.AsyncClient, n: int) -> None:
        while not until.is_set():
            body = {"modelName": model, "features": rows[n % len(rows)]}
            start = time.perf_counter()
            reply = await http.post("/v1/predict", json=body)
            elapsed = (time.perf_counter() - start) * 1e3
            version = int(reply.headers.get("x-mlray-model-version", 0))
            seen[version if reply.status_code == 200 else -reply.status_code].append(elapsed)
            if reply.status_code != 200:
                errors[reply.status_code][_error_text(reply)] += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        await asyncio.gather(*(one_client(http, n) for n in range(clients)))


def _error_text(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("error", reply.text))[:120]
    except ValueError:
        return reply.text[:120]


#: Why the rollout's traffic can see each status (printed under the table when it does).
WHY = {503: "no version could take the request at that moment (a version's replicas "
            "starting, a canary step moving traffic, or a full queue): the ingress sheds it "
            "with Retry-After instead of letting it wait; clients retry",
       504: "no answer within the request deadline",
       429: "the caller's rate limit"}


def _explain_errors(errors: dict[int, Counter[str]]) -> None:
    for status, messages in sorted(errors.items()):
        message = messages.most_common(1)[0][0]
        console.print(f"  HTTP {status} ({sum(messages.values())} requests, mostly "
                      f"[italic]{message}[/]): {WHY.get(status, 'see the message')}")


@contextlib.contextmanager
def _ray_output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (Ray's progress bars, raylet warnings, Tune's
    banner; also what child processes inherit) to ``log`` while the block runs; the demo
    prints through :data:`console`, kept on the real stdout. An error is raised after
    both are restored, so its traceback reaches the screen."""
    log.parent.mkdir(parents=True, exist_ok=True)
    streams = sys.stdout, sys.stderr
    for stream in streams:
        stream.flush()
    saved = os.dup(1), os.dup(2)
    screen = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8")
    sink = open(log, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 (closed below)
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    sys.stdout = sys.stderr = sink  # also where they are not fds 1 and 2
    console.file = screen
    try:
        yield
    finally:
        sink.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        console.file = sys.stdout
        screen.close()
        sink.close()


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _by_entity(client: mlray.Client, url: str, model: str, data: Path) -> None:
    """Stream fresh transactions into the velocity windows, then predict by entity key."""
    customers = [1, 2, 3]
    counts = features.stream_new_transactions(client, customers, per_customer=5)
    if counts is None:
        console.print("streams: no Redis for stream_url; skipped")
    else:
        console.print(f"streams: 5 new transactions each → txn_count_1h {counts}")
    table = Table(title=f"POST /v1/predict by entity key ({model})")
    for col in ("customer", "amount", "hour", "version", "probability"):
        table.add_column(col)
    with httpx.Client(base_url=url, timeout=30) as http:
        for row in features.latest_transactions(data, customers).itertuples():
            reply = http.post("/v1/predict", json=features.request_body(model, row))
            body = reply.json()
            table.add_row(str(row.customer_id), f"{row.amount:.2f}", str(row.hour),
                          str(body.get("modelVersion", reply.status_code)),
                          f"{body['probabilities'][0]:.3f}" if reply.status_code == 200
                          else body.get("error", ""))
    console.print(table)


def _serve(client: mlray.Client, model: str, first: int, second: int, data: Path) -> str:
    """Deploy ``first``, then canary ``second`` to 100% under live HTTP traffic; the URL."""
    from mlray.serving.launch import start_serving

    url = start_serving(client.config)
    console.print(f"serving: Ray Serve ingress at [cyan]{url}[/] (OpenAPI at {url}/docs)")
    with console.status(f"deploying {model} v{first} (direct)"):
        client.serving.deploy(model, first, strategy="direct", wait=True, timeout_s=300)
    rows = example_transactions()
    seen: dict[int, list[float]] = defaultdict(list)
    errors: dict[int, Counter[str]] = defaultdict(Counter)

    async def run() -> mlray.Rollout:
        stop = asyncio.Event()
        load = asyncio.create_task(_traffic(url, model, rows, stop, seen, errors))
        await asyncio.sleep(2)

        def show(rollout: mlray.Rollout) -> None:
            console.print(f"  canary: {rollout.history[-1].message}")

        rollout = await asyncio.to_thread(client.serving.deploy, model, second,
                                          strategy="canary", wait=True, timeout_s=300,
                                          on_change=show)
        await asyncio.sleep(2)
        stop.set()
        await load
        return rollout

    console.print(f"canary rollout of {model} v{second} under 8 concurrent HTTP clients:")
    rollout = asyncio.run(run())
    table = Table(title="HTTP traffic during the rollout, by the version that answered")
    for col in ("version", "requests", "p50 ms", "p99 ms"):
        table.add_column(col)
    for version, times in sorted(seen.items()):
        label = f"v{version}" if version > 0 else f"HTTP {-version}"
        table.add_row(label, str(len(times)), f"{np.percentile(times, 50):.1f}",
                      f"{np.percentile(times, 99):.1f}")
    console.print(table)
    _explain_errors(errors)
    policy = client.registry.get_traffic(model)
    console.print(f"rollout {rollout.status}; traffic now "
                  f"{ {f'v{v}': w for v, w in policy.weights.items()} }")
    _by_entity(client, url, model, data)
    monitoring.watch(client, console, url, model, second, client.config.home / "reports")
    return url


def main() -> None:
    """Run the demo end to end: its own Ray and Redis prefix, both cleaned up after."""
    quiet_ray_env()  # Tune's box and Ray Data's bars off where a setting exists
    os.environ.setdefault("MLRAY_SERVING_CONFIG", str(SERVING))
    os.environ.setdefault("MLRAY_ALERTS_CONFIG", str(ALERTS))
    # Every key this run writes to Redis starts with its own prefix (another run's
    # velocity windows once mixed with this one's on the shared default "mlray").
    prefix = f"mlray-demo-{uuid.uuid4().hex[:8]}"
    os.environ["MLRAY_REDIS_PREFIX"] = prefix
    if _redis_answers("redis://127.0.0.1:6379/0"):
        os.environ.setdefault("MLRAY_STREAM_URL", "redis://127.0.0.1:6379/0")
    config = mlray.load_config()
    log = config.home / "demo-ray.log"
    with _ray_output_to(log):
        try:
            _run(config, log)
        finally:
            _clean_up(config)


def _clean_up(config: mlray.PlatformConfig) -> None:
    """Stop the demo's Ray and remove its Redis keys (only those under its prefix)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    redis_urls = {u for u in (config.stream_url, config.online_url, config.state_url)
                  if u and u.startswith(("redis://", "rediss://"))}
    for url in sorted(redis_urls):
        removed = features.remove_redis_keys(url, config.redis_prefix)
        console.print(f"redis: removed the demo's {removed} keys under "
                      f"[cyan]{config.redis_prefix}:[/] ({redact(url)})")


def _run(platform: mlray.PlatformConfig, log: Path) -> None:
    started = time.time()
    console.rule("[bold]mlray demo: train, tune, gate, promote, serve from the registry")
    if not port_free(platform.serve_port):
        port = next(p for p in range(platform.serve_port + 1, platform.serve_port + 200)
                    if port_free(p))
        console.print(f"[yellow]port {platform.serve_port} is taken; serving on {port}[/]")
        os.environ["MLRAY_SERVE_PORT"] = str(port)
        platform = mlray.load_config()
    # Its own local Ray unless a cluster is configured: never whatever Ray runs nearby.
    client = mlray.connect(platform.ray_address or "local", config=platform)
    home = client.config.home
    console.print(f"platform: a {'configured' if platform.ray_address else 'local'} Ray, "
                  f"actors in namespace [cyan]{client.config.namespace}[/], state at "
                  f"[cyan]{client.config.resolved_state_url}[/]; Ray's own logs: {log}")
    if client.config.stream_url:
        console.print(f"redis: streams on {redact(client.config.stream_url)}, every key under "
                      f"the prefix [cyan]{client.config.redis_prefix}:[/] (removed at the end)")
    now = dt.datetime.now(dt.UTC)
    data = write_fraud(home / "data" / "fraud.parquet", 20_000, seed=0,
                       start=now - dt.timedelta(days=30), days=29.9)
    console.print(f"data: 20,000 generated transactions of the last 30 days in {data}")
    entities, changes = features.prepare_features(client, data)
    console.print(f"features: applied configs/features ({len(changes)} changes); velocity "
                  "history recorded offline")
    config = _config(entities)
    console.print(f"training set: {features.SERVICE} joined point-in-time onto "
                  f"{entities.name}")

    with _bar() as bar:
        task = bar.add_task("Ray Train, 2 workers", total=config.hyperparameters.epochs)
        trained = run_training(client, config.model_copy(update={"promote": "none"}),
                               progress=lambda epoch, m: bar.update(task, completed=epoch + 1))
    assert config.tune is not None
    with _bar() as bar:
        task = bar.add_task("Ray Tune sweep (ASHA)", total=config.tune.num_samples)
        tuned = run_tuning(client, config.model_copy(update={"promote": "none"}),
                           progress=lambda done, total: bar.update(task, completed=done,
                                                                   total=total))

    client.registry.update_model(config.name, feature_service=features.SERVICE)
    candidates = [v for v in (trained.version, tuned.version) if v is not None]
    best = max(candidates, key=lambda v: v.metrics.get("roc_auc", 0.0))
    table = Table(title=f"registry: {config.name}")
    for col in ("version", "from", "roc_auc", "f1", "log_loss", "gates"):
        table.add_column(col)
    for origin, v in (("Ray Train", trained.version), ("Ray Tune best", tuned.version)):
        if v is not None:
            table.add_row(str(v.version), origin, f"{v.metrics['roc_auc']:.4f}",
                          f"{v.metrics['f1']:.4f}", f"{v.metrics['log_loss']:.4f}", _gates(v))
    console.print(table)

    uri = f"models:/{config.name}/Production"
    if best.validation is not None and not best.validation.passed:
        console.print(f"[yellow]v{best.version} failed its gates "
                      f"({best.validation.failed_critical}); not promoted[/]")
        uri = best.uri
    else:
        client.registry.transition_stage(config.name, best.version, Stage.STAGING)
        client.registry.promote(config.name, best.version)
        client.registry.set_alias(config.name, "champion", best.version, move=True)
        console.print(f"promoted [green]{config.name} v{best.version}[/] to Production "
                      "(alias champion)")

    predictor = load(uri, client)
    rows = example_transactions()
    risky, safe = predictor.predict(rows)
    console.print(f"{uri} scores a risky transaction "
                  f"{risky:.3f} and an ordinary one {safe:.3f}")
    jobs = Table(title="jobs")
    for col in ("job", "kind", "status", "run", "version"):
        jobs.add_column(col)
    for job in client.jobs.list(limit=2):
        jobs.add_row(job.job_id, job.kind, job.status.value, (job.run_id or "")[:12],
                     str(job.model_version))
    console.print(jobs)
    runs = client.features.materialize()
    console.print("materialized offline → online: "
                  + ", ".join(f"{r.view} {r.rows:,} entities" for r in runs))
    if trained.version is not None and tuned.version is not None:
        # Applied before the drifted traffic: the drift alert it brings starts the pipeline.
        pipeline = loop.prepare(client, console, config, data, entities)
        url = _serve(client, config.name, trained.version.version, tuned.version.version, data)
        console.rule("[bold]closing the loop: drift alert → retraining pipeline → canary → A/B")
        loop.follow(client, console, url, config.name, pipeline.name)
    console.print(f"[green]demo finished in {time.time() - started:.0f}s[/]")


if __name__ == "__main__":
    main()
