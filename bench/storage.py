"""Artifact and registry operations on ``s3://`` against the local filesystem, same run.

    python bench/storage.py [--mb 10] [--reps 5]

Starts moto's S3 server (``moto[server]``, the dev extra) on a free loopback port, then
times, for a ``--mb`` MB model file, on each store: ``ArtifactStore.put``, ``fetch``
(download and sha256 check) and ``ModelRegistry.create_version`` (which re-reads the
artifact to verify its hash), median of ``--reps`` rounds in which the two stores take
turns. Prints each s3/local ratio; the target is <= 2x. Moto is a Python server in
another process on this host: its figures say what mlray's S3 path costs over loopback,
not what a real object store would do.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mlray._private.loopback import start_listening
from mlray.errors import BackendUnavailable
from mlray.identity import Caller
from mlray.registry import ModelRegistry, ModelSpec
from mlray.registry.types import VersionSpec
from mlray.storage import ArtifactStore, open_state_store
from mlray.storage.artifacts import ArtifactRef

console = Console(width=120)
TARGET = 2.0
ADMIN = Caller.local_admin("bench")


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free port; returns the process and ``host:port``."""
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        proc = start_listening([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], port, "moto server", 30)
    except BackendUnavailable as exc:
        raise SystemExit(str(exc)) from None
    return proc, f"127.0.0.1:{port}"


def s3_root(endpoint: str) -> str:
    """A fresh bucket on the moto server, as an artifact root URI."""
    import pyarrow.fs as pafs

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=endpoint, scheme="http",
                      allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/artifacts?endpoint_override={endpoint}&scheme=http"


class Side:
    """One store under test: its artifact store, a registry over it and the refs put."""

    def __init__(self, root: str, work: Path) -> None:
        self.artifacts = ArtifactStore(root)
        self.registry = ModelRegistry(
            open_state_store(f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}"), self.artifacts)
        self.registry.create_model(ADMIN, "default", ModelSpec(name="model"))
        self.work = work
        self.times: dict[str, list[float]] = {"put": [], "fetch": [], "create_version": []}

    def _timed(self, op: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = fn()
        self.times[op].append(time.perf_counter() - start)
        return out

    def round(self, src: Path) -> None:
        """put, fetch and create_version of one model file, each timed."""
        ref = self._timed("put", lambda: self.artifacts.put(src, name="model.bin"))
        assert isinstance(ref, ArtifactRef)
        self._timed("fetch", lambda: self.artifacts.fetch(
            ref.uri, ref.sha256, self.work / f"out-{uuid.uuid4().hex}"))
        self._timed("create_version", lambda: self.registry.create_version(
            ADMIN, "default", "model", VersionSpec(artifact_uri=ref.uri,
                                                   artifact_sha256=ref.sha256)))


def measure(roots: dict[str, str], work: Path, mb: int, reps: int
            ) -> dict[str, dict[str, float]]:
    """Median seconds of each operation on each store. The stores take turns within every
    round (same file, same moment), so load on the host weighs on both alike."""
    sides = {name: Side(root, work) for name, root in roots.items()}
    for i in range(reps + 1):
        src = work / f"model-{i}.bin"  # distinct bytes each round: nothing cached
        src.write_bytes(os.urandom(mb << 20))
        for side in sides.values():
            side.round(src)
        src.unlink()
    # The first round warms connections and imports: left out.
    return {name: {op: statistics.median(t[1:]) for op, t in side.times.items()}
            for name, side in sides.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=10, help="Model size in MB.")
    parser.add_argument("--reps", type=int, default=5, help="Repetitions (median).")
    args = parser.parse_args()
    proc, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory(prefix="mlray-bench-storage-") as tmp:
            work = Path(tmp)
            result = measure({"local": str(work / "artifacts"), "s3": s3_root(endpoint)},
                             work, args.mb, args.reps)
            local, s3 = result["local"], result["s3"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    table = Table(title=f"{args.mb} MB model, median of {args.reps} (s3 = moto on loopback)")
    for column in ("operation", "local ms", "s3 ms", "s3 / local", f"<= {TARGET:g}x"):
        table.add_column(column)
    for op in local:
        ratio = s3[op] / local[op]
        table.add_row(op, f"{local[op] * 1e3:.1f}", f"{s3[op] * 1e3:.1f}", f"{ratio:.2f}x",
                      "yes" if ratio <= TARGET else "no")
    console.print(table)


if __name__ == "__main__":
    main()
