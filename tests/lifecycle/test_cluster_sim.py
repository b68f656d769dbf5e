"""`make cluster-sim`'s code, run as the Makefile runs it: the rendered cluster on loopback
(head + two workers with the pods' ray start argv and env, the rendered Redis, an S3 API
server), driven through serve deploy, ray job submit with token auth, a prediction and a
feature read over HTTP; and nothing of it left running afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from actors import ACTORS
from mlray._private.ray_head import session_processes

pytestmark = pytest.mark.lifecycle
ROOT = Path(__file__).resolve().parents[2]
STEPS = ("ray nodes", "serve deploy", "control plane", "ingress", "train job", "deploy",
         "predict", "features")


def test_cluster_sim_drives_the_rendered_cluster_and_stops_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLRAY_", "RAY_ADDRESS"))}
    done = subprocess.run([sys.executable, "-m", "jobs.cluster_sim"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    for step in STEPS:
        assert re.search(rf"^\[ok\] +{step} ", out, re.M), f"step {step!r} missing:\n{out}"
    assert f"{len(ACTORS)} control-plane actors up by themselves" in out
    assert re.search(r"POST /v1/predict -> 200, probability (0\.\d{3}|1\.000)", out)
    assert "--num-cpus=0" in out and "--block" not in out  # the head's own ray start argv
    sids = [int(s) for s in re.findall(r"^node \d \(\w+\) session (\d+):", out, re.M)]
    assert len(sids) >= 3 and not any(session_processes(sid) for sid in sids)
