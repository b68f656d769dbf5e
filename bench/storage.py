"""Artifact and registry operations on ``s3://`` against the local filesystem, same run.

    python bench/storage.py [--mb 10] [--reps 5]

Starts moto's S3 server (``moto[server]``, the dev extra) on a free loopback port, then
times, for a ``--mb`` MB model file, on each store: ``ArtifactStore.put``, ``fetch``
(download and sha256 check) and ``ModelRegistry.create_version`` (which re-reads the
artifact to verify its hash), median of ``--reps``. Prints each s3/local ratio; the
target is <= 2x. Moto is a Python server in another process on this host: its figures
say what mlray's S3 path costs over loopback, not what a real object store would do.
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

from mlray.identity import Caller
from mlray.registry import ModelRegistry, ModelSpec
from mlray.registry.types import VersionSpec
from mlray.storage import ArtifactStore, open_state_store

console = Console(width=120)
TARGET = 2.0


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free port; returns the process and ``host:port``."""
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto server did not start") from None
            time.sleep(0.05)


def s3_root(endpoint: str) -> str:
    """A fresh bucket on the moto server, as an artifact root URI."""
    import pyarrow.fs as pafs

    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    pafs.S3FileSystem(endpoint_override=endpoint, scheme="http",
                      allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/artifacts?endpoint_override={endpoint}&scheme=http"


def median_s(fn: Callable[[int], object], reps: int) -> float:
    """Median seconds of ``fn(i)`` over ``reps`` calls."""
    times = []
    for i in range(reps):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(root: str, work: Path, mb: int, reps: int) -> dict[str, float]:
    """Median seconds of put, fetch and create_version on the store at ``root``."""
    artifacts = ArtifactStore(root)
    registry = ModelRegistry(open_state_store(f"sqlite:///{work / f'{uuid.uuid4().hex}.db'}"),
                             artifacts)
    admin = Caller.local_admin("bench")
    registry.create_model(admin, "default", ModelSpec(name="model"))
    sources = []
    for i in range(reps):  # distinct bytes each time: nothing is served from a cache
        src = work / f"model-{uuid.uuid4().hex[:8]}-{i}.bin"
        src.write_bytes(os.urandom(mb << 20))
        sources.append(src)
    refs = [artifacts.put(src) for src in sources[:1]]
    put = median_s(lambda i: refs.append(artifacts.put(sources[i], name="model.bin")), reps)
    fetch = median_s(lambda i: artifacts.fetch(refs[i + 1].uri, refs[i + 1].sha256,
                                               work / f"out-{uuid.uuid4().hex}"), reps)
    create = median_s(lambda i: registry.create_version(admin, "default", "model", VersionSpec(
        artifact_uri=refs[i + 1].uri, artifact_sha256=refs[i + 1].sha256)), reps)
    return {"put": put, "fetch": fetch, "create_version": create}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=10, help="Model size in MB.")
    parser.add_argument("--reps", type=int, default=5, help="Repetitions (median).")
    args = parser.parse_args()
    proc, endpoint = start_moto()
    try:
        with tempfile.TemporaryDirectory(prefix="mlray-bench-storage-") as tmp:
            work = Path(tmp)
            local = measure(str(work / "artifacts"), work, args.mb, args.reps)
            s3 = measure(s3_root(endpoint), work, args.mb, args.reps)
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
