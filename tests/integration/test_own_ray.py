"""The suite's Ray is its own: a stale cluster record or RAY_ADDRESS never makes it join
(or ask) another cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import OwnRay, free_port

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import json, ray
from tests.conftest import start_own_ray

own = start_own_ray(num_cpus=1, namespace="own-ray-check")

@ray.remote
class Marker:
    def ping(self):
        return "ok"

marker = Marker.options(name="marker", namespace="own-ray-check").remote()
ray.get(marker.ping.remote())
names = [a.name for a in own.list_actors(filters=[("ray_namespace", "=", "own-ray-check")])]
print(json.dumps({"gcs": own.gcs_address, "names": names}))
ray.shutdown()
"""


def test_fixture_ray_ignores_a_stale_cluster_record_and_ray_address() -> None:
    dead = free_port()
    # A short temp root: Ray's unix sockets live under it (path length limit).
    tmp_root = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    try:
        (Path(tmp_root) / "ray").mkdir()
        (Path(tmp_root) / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{dead}")
        env = {**os.environ, "RAY_TMPDIR": tmp_root, "RAY_ADDRESS": f"127.0.0.1:{dead}",
               "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dead}"}
        out = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=400, check=False)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert not seen["gcs"].endswith(f":{dead}")
    assert seen["names"] == ["marker"]


def test_state_api_asks_the_suites_own_ray(ray_shared: OwnRay) -> None:
    import ray

    assert ray.get_runtime_context().gcs_address == ray_shared.gcs_address
    assert "RAY_ADDRESS" not in os.environ
    assert ray_shared.list_actors(filters=[("ray_namespace", "=", "no-such-namespace")]) == []
