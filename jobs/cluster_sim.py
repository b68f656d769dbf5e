"""``make cluster-sim``: the rendered KubeRay cluster, run on loopback and driven end to end.

Renders (in memory) from ``configs/cluster.yaml`` and the platform config, starts the head
and two CPU workers with the pods' ``ray start`` argv and environment beside the rendered
Redis and an S3 API server (:mod:`mlray.cluster.sim`), then drives it as a user would: the
RayService's Serve config deployed with token auth (the control-plane actors must come up
by themselves), the first API key (``mlray keys bootstrap`` in the head, then into the
Secret the pods mount), the RayJob's training entrypoint through ``ray job submit``
(acting as that key), the trained model deployed and asked for a prediction over HTTP
(refused without the key), features pushed and read back over HTTP. Prints each step and
its result; exits 1 on the first failure, always after stopping everything it started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml

ROOT = Path(__file__).resolve().parents[1]
IMAGE_APP_DIR = "/app"  # where the image keeps the repository (cluster/Dockerfile)
MODEL = "fraud-sim"


class StepFailed(Exception):
    """A step's check did not hold (the message says what was seen)."""


def _step(name: str, run: Callable[[], str]) -> None:
    start = time.monotonic()
    try:
        result = run()
    except Exception as exc:
        print(f"[FAIL] {name} ({time.monotonic() - start:.0f}s): {exc}", flush=True)
        raise
    print(f"[ok]   {name} ({time.monotonic() - start:.0f}s): {result}", flush=True)


def _until(check: Callable[[], Any], what: str, timeout_s: float, every_s: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; StepFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise StepFailed(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(every_s)


def _data_in_bucket(sim: Any, local: Path) -> str:
    """Copy the generated training set into the bucket, where every pod reads it."""
    import pyarrow.fs as pafs

    uri = f"{sim.spec.storage.bucket_uri.rstrip('/')}/data/{local.name}"
    fs, path = pafs.FileSystem.from_uri(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=fs)
    return uri


def _train_config(workdir: Path, data: str) -> Path:
    """configs/train/fraud.yaml sized for two cores: the generated data, 2 epochs, a small
    MLP, no promotion (the fraud gates are for the real model)."""
    base = yaml.safe_load((ROOT / "configs" / "train" / "fraud.yaml").read_text())
    base.update(name=MODEL, promote="none", tune=None)
    base["data"]["path"] = data
    base["model"]["hidden"] = [8]
    base["hyperparameters"].update(epochs=2, batch_size=256)
    base["early_stopping"] = None
    path = workdir / "train.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


def run(config_path: Path | None, spec_path: Path) -> None:
    """Start the loopback cluster, drive it, stop it."""
    from mlray.cluster.sim import LoopbackCluster
    from mlray.cluster.spec import load_cluster_spec
    from mlray.config import load_config

    spec = load_cluster_spec(spec_path)
    config = load_config(config_path, env={})  # as `mlray cluster render` reads it
    with LoopbackCluster(spec, config, workers=2) as sim:
        print(f"[ok]   cluster: head + 2 workers, dashboard {sim.dashboard_url}, "
              f"serve {sim.serve_url}, files {sim.workdir}", flush=True)
        try:
            _drive(sim)
        finally:
            if "ray" in sys.modules:
                sys.modules["ray"].shutdown()
    shutil.rmtree(sim.workdir, ignore_errors=True)  # kept (logs) when a step failed


def _client_env(sim: Any) -> dict[str, str]:
    """What a client pod sees: the head's variables (token, MLRAY_*, the S3 Secret)."""
    env = sim.node_env(0)
    env["MLRAY_HOME"] = env["HOME"] = str(sim.workdir / "client")
    Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def _drive(sim: Any) -> None:
    env = _client_env(sim)
    os.environ.update({k: v for k, v in env.items()
                       if k.startswith(("MLRAY_", "AWS_", "RAY_AUTH"))})
    import httpx
    import ray

    from actors import ACTORS

    _step("ray nodes", lambda: _nodes(ray, sim))
    serve_file = sim.workdir / "serve.yaml"
    serve_file.write_text(yaml.safe_dump(sim.serve_config()))
    serve = str(Path(sys.executable).with_name("serve"))

    def deploy_serve() -> str:
        done = subprocess.run([serve, "deploy", str(serve_file), "-a", sim.dashboard_url],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise StepFailed(f"serve deploy exit {done.returncode}: {done.stderr[-800:]}")
        return f"RayService serveConfigV2 deployed (http port {sim.ports.serve}, token auth)"

    _step("serve deploy", deploy_serve)
    namespace = sim.config.namespace

    def actors_up() -> str:
        def named() -> set[str]:
            return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                    if a["namespace"] == namespace} & set(ACTORS)
        _until(lambda: named() == set(ACTORS), f"control-plane actors in {namespace!r}", 240,
               2)
        return f"{len(ACTORS)} control-plane actors up by themselves: {', '.join(ACTORS)}"

    _step("control plane", actors_up)

    def ready() -> str:
        def answers() -> bool:
            try:
                return httpx.get(f"{sim.serve_url}/v2/health/ready", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False
        _until(answers, "ingress /v2/health/ready", 600, 2)
        return f"ingress ready at {sim.serve_url}"

    _step("ingress", ready)
    key = _api_key(sim)
    version = _train(sim, env)
    import mlray

    client = mlray.connect(address=sim.gcs_address, api_key=key)
    bearer = {"Authorization": f"Bearer {key}"}
    _step("deploy", lambda: _deploy(client, version))
    _step("predict", lambda: _predict(sim, bearer))
    _step("features", lambda: _features(sim, client, bearer))


def _api_key(sim: Any) -> str:
    """The operator's first steps with ``auth: keys``: ``mlray keys bootstrap`` in the head
    pod, then the key into the ``secrets.api_key`` Secret the pods mount (jobs act as it).
    Returns the key, which the operator's client and HTTP calls use."""
    found: dict[str, str] = {}

    def bootstrap() -> str:
        cli = str(Path(sys.executable).with_name("mlray"))
        env = {**sim.node_env(0), "RAY_ADDRESS": sim.gcs_address}  # kubectl exec, head
        done = subprocess.run([cli, "keys", "bootstrap", "--user", "ops", "--json"],
                              env=env, capture_output=True, text=True, timeout=180,
                              check=False)
        if done.returncode != 0:
            raise StepFailed(f"mlray keys bootstrap exit {done.returncode}: "
                             f"{done.stderr[-800:]}")
        issued = json.loads(done.stdout)
        found["key"] = issued["key"]
        sim.create_key_secret(issued["key"])
        refused = subprocess.run([cli, "keys", "bootstrap", "--json"], env=env,
                                 capture_output=True, text=True, timeout=180, check=False)
        if refused.returncode == 0:
            raise StepFailed("a second `mlray keys bootstrap` issued another key")
        return (f"`mlray keys bootstrap` in the head: key {issued['key_id']} for "
                f"{issued['user']} (a second one refused), into the mounted Secret")

    _step("api key", bootstrap)
    return found["key"]


def _nodes(ray: Any, sim: Any) -> str:
    ray.init(address=sim.gcs_address, logging_level="ERROR", log_to_driver=False)
    def three_alive() -> list[dict[str, Any]] | None:
        alive = [n for n in ray.nodes() if n["Alive"]]
        return alive if len(alive) == 3 else None

    alive = _until(three_alive, "3 alive nodes", 60)
    resources = ray.cluster_resources()
    import redis

    gcs_keys = redis.Redis(port=sim.ports.redis, password=sim.redis_password).dbsize()
    if not gcs_keys:
        raise StepFailed("the GCS wrote nothing to the rendered Redis (fault tolerance off)")
    return (f"{len(alive)} alive; CPU {resources.get('CPU', 0):g}, "
            f"{sim.spec.control_resource} {resources.get(sim.spec.control_resource, 0):g}; "
            f"GCS data in the rendered Redis ({gcs_keys} keys)")


def _train(sim: Any, env: dict[str, str]) -> int:
    """The RayJob's entrypoint through ``ray job submit`` (token auth), its --config
    swapped for a small one; returns the registered version. No working dir, as in the
    RayJob: the image has mlray, actors and jobs installed, as this venv has."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from mlray.datasets import write_fraud

    data = _data_in_bucket(sim, write_fraud(sim.workdir / "data" / "fraud.parquet", 3000,
                                            seed=7))
    small = _train_config(sim.workdir, data)
    entry = shlex.split(sim.manifests["rayjob-train"]["spec"]["entrypoint"])
    entry = [str(small) if arg.startswith(IMAGE_APP_DIR + "/") else arg for arg in entry]
    found: dict[str, int] = {}

    def submit() -> str:
        ray_cli = str(Path(sys.executable).with_name("ray"))
        done = subprocess.run([ray_cli, "job", "submit", "--address", sim.dashboard_url,
                               "--no-wait", "--submission-id", "sim-train", "--", *entry],
                              env=env, capture_output=True,
                              text=True, timeout=180, check=False)
        if done.returncode != 0:
            raise StepFailed(f"ray job submit exit {done.returncode}: {done.stderr[-800:]}")
        jobs = JobSubmissionClient(sim.dashboard_url)
        final = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED)
        status = _until(lambda: (s := jobs.get_job_status("sim-train")) in final and s,
                        "training job", 600, 3)
        logs = jobs.get_job_logs("sim-train")
        line = next((x for x in logs.splitlines() if x.startswith("registered ")), "")
        if status != JobStatus.SUCCEEDED or not line:
            raise StepFailed(f"job {status}: {logs[-1500:]}")
        found["version"] = int(line.split()[1].rsplit("/", 1)[1])
        return f"`{shlex.join(entry[:3])} ...` SUCCEEDED; {line}"

    _step("train job", submit)
    return found["version"]


def _deploy(client: Any, version: int) -> str:
    client.serving.deploy(MODEL, version, strategy="direct", wait=True, timeout_s=300)
    return f"{MODEL} v{version} serving"


def _predict(sim: Any, bearer: dict[str, str]) -> str:
    import httpx

    from mlray.datasets import example_transactions

    def ask() -> httpx.Response | None:
        reply = httpx.post(f"{sim.serve_url}/v1/predict", timeout=60, headers=bearer,
                           json={"modelName": MODEL, "features": example_transactions()[0]})
        # 404/503 until every ingress replica has synced the new deployment
        return None if reply.status_code in (404, 503) else reply

    reply = _until(ask, f"{MODEL} routed by the ingress", 120, 1)
    if reply.status_code != 200:
        raise StepFailed(f"HTTP {reply.status_code}: {reply.text[:300]}")
    keyless = httpx.post(f"{sim.serve_url}/v1/predict", timeout=60,
                         json={"modelName": MODEL, "features": example_transactions()[0]})
    if keyless.status_code != 401:
        raise StepFailed(f"without a key: HTTP {keyless.status_code}, not 401")
    probability = reply.json()["probabilities"][0]
    if not 0.0 <= probability <= 1.0:
        raise StepFailed(f"probability {probability} out of [0, 1]")
    return f"POST /v1/predict -> 200, probability {probability:.3f} (401 without the key)"


def _features(sim: Any, client: Any, bearer: dict[str, str]) -> str:
    """Apply the example feature repo (batch sources in the bucket), push customer
    profiles through the ingress (online Redis and the source in the bucket), read them
    back over HTTP."""
    import httpx

    from jobs._demo_features import definitions
    from mlray.features.repo import FeatureRepo

    repo = definitions(sim.workdir / "data" / "fraud.parquet", client.config.redis_prefix)
    raw = repo.model_dump(mode="json")
    for view in raw["feature_views"]:  # batch sources: a folder each in the bucket
        if view["source"]["type"] == "parquet":
            view["source"]["path"] = (f"{sim.spec.storage.bucket_uri.rstrip('/')}/sources/"
                                      f"{view['name']}")
    client.features.allow_sources([f"{sim.spec.storage.bucket_uri.rstrip('/')}/sources"])
    client.features.apply(FeatureRepo.model_validate(raw))
    rows = [{"customer_id": 7001, "account_age_days": 400, "amount_avg_7d": 31.5},
            {"customer_id": 7002, "account_age_days": 12, "amount_avg_7d": 250.0}]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = [{**row, "event_timestamp": now} for row in rows]
    pushed = httpx.post(f"{sim.serve_url}/v1/features/push", timeout=60, headers=bearer,
                        json={"view": "customer_profile", "rows": rows, "to": "both"})
    if pushed.status_code != 200:
        raise StepFailed(f"push: HTTP {pushed.status_code}: {pushed.text[:300]}")
    read = httpx.post(f"{sim.serve_url}/v1/features", timeout=60, headers=bearer, json={
        "entities": {"customer_id": [7001, 7002]},
        "features": ["customer_profile:account_age_days"]})
    if read.status_code != 200:
        raise StepFailed(f"read: HTTP {read.status_code}: {read.text[:300]}")
    body = read.json()
    text = json.dumps(body)
    if body.get("values") != [[400, 12]] or body.get("statuses") != [["PRESENT"] * 2]:
        raise StepFailed(f"read back {text[:300]}, not the pushed [[400, 12]] PRESENT")
    return f"pushed 2 rows to {pushed.json()['to']}; POST /v1/features -> {text[:160]}"


def main(config: Path = typer.Option(None, help="Platform config (default: mlray's defaults)."),
         spec: Path = typer.Option(ROOT / "configs" / "cluster.yaml", help="Cluster spec.")
         ) -> None:
    """Run the rendered cluster on loopback and drive it; exit 1 on any failure."""
    start = time.monotonic()
    try:
        run(config, spec)
    except Exception as exc:
        print(f"cluster-sim FAILED after {time.monotonic() - start:.0f}s: {exc}", flush=True)
        raise typer.Exit(1) from None
    print(f"cluster-sim passed in {time.monotonic() - start:.0f}s", flush=True)


if __name__ == "__main__":
    typer.run(main)
