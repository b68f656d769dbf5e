"""The README's command-line walkthrough, run as written, in order, on this machine.

The block after ``<!-- readme-walkthrough -->`` in README.md is read and each line run
as a command (``.venv/bin/`` is this interpreter's bin directory), from a scratch
directory holding a copy of the repository's ``configs/``, with its own MLRAY_HOME and
ports.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.lifecycle
ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- readme-walkthrough -->"


def walkthrough() -> list[list[str]]:
    """The commands of the README's walkthrough block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, "the README lost its walkthrough marker"
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    bin_dir = str(Path(sys.executable).parent)
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            if words[0].startswith(".venv/bin/"):
                words[0] = f"{bin_dir}/{words[0].removeprefix('.venv/bin/')}"
            commands.append(words)
    return commands


def test_the_readme_walkthrough_works_as_written(tmp_path: Path) -> None:
    commands = walkthrough()
    names = [" ".join(c[1:3]) for c in commands]
    assert names[:4] == ["-m mlray.datasets", "up", "train --config", "tune --config"]
    assert names[-1] == "down"
    # A copy: data.path resolves against the config file, so the data lands in tmp_path.
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "MLRAY_HOME": str(tmp_path / "home"),
           "MLRAY_RAY_HEAD_PORT": str(free_port()),
           "MLRAY_RAY_DASHBOARD_PORT": str(free_port()),
           "MLRAY_SERVE_PORT": str(free_port())}
    for name in ("RAY_ADDRESS", "MLRAY_RAY_ADDRESS", "MLRAY_CONFIG", "MLRAY_STATE_URL"):
        env.pop(name, None)
    mlray = str(Path(sys.executable).parent / "mlray")

    def run(words: list[str]) -> str:
        done = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1200, check=False)
        assert done.returncode == 0, f"{' '.join(words)}: {done.stderr[-3000:]}"
        return done.stdout

    outputs: dict[str, str] = {}
    stopped = False
    try:
        for words, name in zip(commands, names, strict=True):
            outputs[name] = run(words)
            stopped = stopped or name == "down"
    finally:
        if not stopped:
            subprocess.run([mlray, "down"], cwd=tmp_path, env=env, capture_output=True,
                           timeout=300, check=False)
    assert "models:/fraud/1" in outputs["train --config"]
    assert "models:/fraud/2" in outputs["tune --config"]
    assert json.loads(run([mlray, "status", "--json"]))["mode"].startswith("embedded")
    versions = json.loads(run([mlray, "models", "show", "fraud", "--json"]))["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert all(0.5 < v["metrics"]["roc_auc"] <= 1.0 for v in versions)
