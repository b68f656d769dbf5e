"""Stop Ray entirely and start it again: everything acknowledged is still there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlray import PlatformConfig

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
