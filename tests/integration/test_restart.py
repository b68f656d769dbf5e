"""Stop Ray entirely and start it again: everything acknowledged is still there, and
serving comes back by itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlray import PlatformConfig
from tests.conftest import wait_for
from tests.integration.platform import Platform

WRITE = """
import json, sys, mlray
c = mlray.connect("local")
v = c.registry.register("m", sys.argv[1], metrics={"auc": 0.9})
c.registry.promote("m", v.version)
c.registry.set_alias("m", "champion", v.version)
with c.experiments.run("e", params={"lr": 0.1}) as run:
    c.experiments.log_metrics(run.run_id, {"loss": 0.25}, step=3)
print(json.dumps({"run_id": run.run_id, "version": v.version}))
"""

READ = """
import json, sys, mlray
c = mlray.connect("local")
v = c.registry.resolve("models:/m@champion")
run = c.experiments.get_run(sys.argv[1])
print(json.dumps({"version": v.version, "stage": v.stage.value, "status": run.status.value,
                  "loss": run.metrics["loss"].value, "lr": run.params["lr"]}))
"""


def _run(code: str, arg: str, config: PlatformConfig) -> dict[str, object]:
    env = {**os.environ, "MLRAY_HOME": str(config.home),
           "MLRAY_STATE_URL": config.resolved_state_url,
           "MLRAY_REDIS_PREFIX": config.redis_prefix, "MLRAY_NAMESPACE": config.namespace}
    out = subprocess.run([sys.executable, "-c", code, arg], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_state_survives_a_full_ray_restart(platform_config: PlatformConfig,
                                           tmp_path: Path) -> None:
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w" * 10)
    written = _run(WRITE, str(weights), platform_config)
    read = _run(READ, str(written["run_id"]), platform_config)
    assert read == {"version": written["version"], "stage": "Production",
                    "status": "FINISHED", "loss": 0.25, "lr": 0.1}


@pytest.mark.slow
def test_serving_comes_back_by_itself_when_serve_loses_its_apps(platform: Platform) -> None:
    """As after a cluster restart: the registry survives, the model apps do not. The
    deployments actor (restarted too) redeploys what the stored policy wants and removes
    what nothing wants, with no deploy by hand."""
    import httpx
    import ray
    from ray import serve

    from mlray.serving.deployer import ServeDeployer
    from mlray.serving.model_names import app_name
    from mlray.serving.settings import load_serving_config

    model = platform.model(versions=2)
    platform.deploy(model, 1)
    assert platform.predict(model).status_code == 200
    deployer = ServeDeployer(platform.config)
    ray.kill(ray.get_actor("deployments", namespace=platform.config.namespace),
             no_restart=False)  # it restarts (max_restarts=-1) ...
    serve.delete(app_name(platform.project, model, 1),
                 _blocking=False)  # ... and Serve loses the app
    wait_for(lambda: deployer.status(platform.project, model, 1)[0]
             in ("DELETING", "NOT_STARTED"),
             timeout=30, interval=0.05)
    stray = platform.client.registry.get_version(model, 2)  # deployed, but nothing wants it
    deployer.deploy(stray, load_serving_config(platform.config.serving_config).for_model(model),
                    wait=False)

    def answers() -> bool:
        try:
            return platform.predict(model).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(answers, timeout=240, interval=1)
    wait_for(lambda: app_name(platform.project, model, 2) not in deployer.running(all_states=True),
             timeout=60, interval=1)
    status = platform.cli("status", "--json")
    assert status.returncode == 0, status.stderr[-2000:]
    apps = {a["app"]: a for a in json.loads(status.stdout[status.stdout.index("{"):])
            ["serving"]["apps"]}
    row = apps[app_name(platform.project, model, 1)]
    assert (row["desired"], row["status"], row["why"]) == (True, "RUNNING", "100% of traffic")
    assert app_name(platform.project, model, 2) not in apps
