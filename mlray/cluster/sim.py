"""The rendered cluster, run for real on loopback: a head and two workers started with the
``ray start`` argv and environment the rendered pods carry, beside the stores they use (a
redis-server with the rendered redis.conf, an S3 API server holding the bucket).

Only what one host forces changes, all of it in :func:`one_host_argv` and
:func:`one_host_env`: ports are picked free (GCS, dashboard, metrics export and Ray's other
internal ports, the Serve port, Redis, S3), the Redis service's DNS name becomes 127.0.0.1,
the Secrets get fresh values (a Ray token, a Redis password, the S3 server's endpoint and
keys; the API key file lies in the node's folder), each node gets its own ``HOME`` and
``MLRAY_HOME`` (as each pod has its own disk; this host's ``~/.ray/auth_token`` belongs to
other Rays), Ray's temp dir is the cluster's own (``RAY_TMPDIR``: ``address="auto"`` would
find another Ray's in /tmp/ray), ``PATH`` leads with this interpreter's bin (the image's
``python``), the raylet waits up to 2 min for its agents (several nodes start on one loaded
host) and ``--block`` is dropped (nodes start detached). KubeRay's own additions for GCS
fault tolerance (``RAY_REDIS_ADDRESS``, ``--redis-password``, a storage namespace) are
added as it would.

Each ``ray start`` runs in a process session of its own; :meth:`LoopbackCluster.stop`
ends exactly those sessions and nothing else on the host, then Redis and the S3 server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from mlray._private.loopback import start_listening
from mlray._private.ray_head import INTERNAL_PORTS, _free_ports, stop_session
from mlray.auth import KEY_FILE_ENV
from mlray.cluster.commands import (
    API_KEY_DIR,
    API_KEY_KEY,
    RAY_TOKEN_KEY,
    REDIS_PASSWORD_KEY,
    PodCommand,
    ray_start_commands,
    redis_host,
)
from mlray.cluster.render import render_manifests
from mlray.cluster.spec import ClusterSpec
from mlray.config import PlatformConfig
from mlray.errors import BackendUnavailable

__all__ = ["LoopbackCluster", "one_host_argv", "one_host_env"]

#: The variable KubeRay gives the head for GCS fault tolerance (gcsFaultToleranceOptions).
KUBERAY_REDIS_PASSWORD = "REDIS_PASSWORD"

#: Environment the sim keeps from the host: not the host's own mlray/Ray/S3 settings.
_HOST_ONLY = ("MLRAY_", "RAY_", "AWS_")


@dataclass(frozen=True)
class Ports:
    """Every port the simulated cluster listens on, picked free on this host."""

    gcs: int
    dashboard: int
    serve: int
    redis: int
    s3: int
    nodes: list[dict[str, int]]  # per node: INTERNAL_PORTS flag -> port

    @classmethod
    def pick(cls, nodes: int) -> Ports:
        found = _free_ports(5 + nodes * len(INTERNAL_PORTS), {6379, 8000, 8265})
        head, rest = found[:5], found[5:]
        per = len(INTERNAL_PORTS)
        return cls(*head, nodes=[dict(zip(INTERNAL_PORTS, rest[i * per:(i + 1) * per],
                                          strict=True)) for i in range(nodes)])

    def fresh(self, node: int) -> Ports:
        """These ports with node ``node``'s picked again (the head's GCS and dashboard
        too): for a retry after another process took one."""
        taken = {self.redis, self.s3, self.serve} | {p for n in self.nodes for p in n.values()}
        found = _free_ports(2 + len(INTERNAL_PORTS), taken)
        nodes = [dict(n) for n in self.nodes]
        nodes[node] = dict(zip(INTERNAL_PORTS, found[2:], strict=True))
        gcs, dashboard = found[:2] if node == 0 else (self.gcs, self.dashboard)
        return replace(self, gcs=gcs, dashboard=dashboard, nodes=nodes)


def one_host_argv(command: PodCommand, ports: Ports, node: int, ray: str) -> list[str]:
    """The pod's ``ray start`` argv with what one host forces: free ports instead of the
    fixed ones, the head at 127.0.0.1, no ``--block``; KubeRay's ``--redis-password``
    (GCS fault tolerance) on the head."""
    argv = command.argv(None if command.is_head else f"127.0.0.1:{ports.gcs}")
    argv = [ray if arg == "ray" and i == 0 else arg for i, arg in enumerate(argv)
            if arg != "--block"]
    forced = {**ports.nodes[node]}
    if command.is_head:
        forced.update({"port": ports.gcs, "dashboard-port": ports.dashboard})
    kept = [arg for arg in argv if arg.split("=", 1)[0].lstrip("-") not in forced]
    extra = [f"--{flag}={port}" for flag, port in sorted(forced.items())]
    if command.is_head:
        extra.append(f"--redis-password=$({KUBERAY_REDIS_PASSWORD})")
    return kept + extra


def one_host_env(command: PodCommand, spec: ClusterSpec, ports: Ports,
                 secret_values: dict[str, str], storage_env: dict[str, str],
                 home: Path) -> dict[str, str]:
    """The pod's environment with what one host forces: Secrets' values given, the Redis
    service's name -> 127.0.0.1:<port>, the Serve port, a home per node, this venv first
    on ``PATH``; KubeRay's GCS fault-tolerance variables on the head."""
    values = {ref: secret_values[ref.key] for ref in command.secrets.values()}
    pod = {**storage_env, **command.environ(values)}  # env wins over envFrom, as in k8s
    service = f"{redis_host(spec)}:6379"
    pod = {name: value.replace(service, f"127.0.0.1:{ports.redis}")
           for name, value in pod.items()}
    pod["MLRAY_HOME"] = str(home)
    pod["HOME"] = str(home)  # a pod's own: not this host's ~/.ray/auth_token of another Ray
    # Ray's files of this cluster, apart from other Rays on the host: a job's
    # ray.init("auto") finds its cluster there (in /tmp/ray it could find another one).
    pod["RAY_TMPDIR"] = str(home.parent / "tmp")
    # Several nodes' agents import at once on one (shared) host: give them time to start.
    pod["RAY_agent_register_timeout_ms"] = "120000"
    pod["MLRAY_SERVE_PORT"] = str(ports.serve)
    if KEY_FILE_ENV in pod:  # the Secret volume, mounted in the node's own folder
        pod[KEY_FILE_ENV] = str(home / API_KEY_DIR.strip("/") / API_KEY_KEY)
    if command.is_head:
        pod["RAY_REDIS_ADDRESS"] = f"127.0.0.1:{ports.redis}"
        pod[KUBERAY_REDIS_PASSWORD] = secret_values[REDIS_PASSWORD_KEY]
        pod["RAY_external_storage_namespace"] = f"sim-{uuid.uuid4().hex[:12]}"
    host = {k: v for k, v in os.environ.items() if not k.startswith(_HOST_ONLY)}
    host["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{host.get('PATH', '')}"
    return {**host, **pod}


@dataclass
class LoopbackCluster:
    """The rendered cluster on this host: Redis, S3, a head and ``workers`` CPU workers.

    Use as a context manager; everything started is stopped on exit, failure or not.
    """

    spec: ClusterSpec
    config: PlatformConfig
    workers: int = 2
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mlray-sim-")))
    log: Any = print
    ports: Ports = field(init=False)
    token: str = field(init=False, default_factory=lambda: secrets.token_hex(32))
    redis_password: str = field(init=False, default_factory=lambda: secrets.token_urlsafe(24))
    _procs: list[subprocess.Popen[bytes]] = field(init=False, default_factory=list)
    _sessions: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.ports = Ports.pick(1 + self.workers)
        self.manifests = render_manifests(self.spec, self.config)
        head, cpu, *_ = ray_start_commands(self.spec, self.config)
        self.commands = [head] + [cpu] * self.workers

    # -- what clients need ------------------------------------------------------------------

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports.gcs}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.serve}"

    @property
    def storage_env(self) -> dict[str, str]:
        """The storage Secret's values (envFrom): the S3 server and its keys."""
        return {"AWS_ACCESS_KEY_ID": "mlray-sim", "AWS_SECRET_ACCESS_KEY": "mlray-sim",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports.s3}"}

    def node_env(self, node: int = 0) -> dict[str, str]:
        """Node ``node``'s environment (0 = the head) as the sim starts it."""
        secret_values = {RAY_TOKEN_KEY: self.token, REDIS_PASSWORD_KEY: self.redis_password}
        return one_host_env(self.commands[node], self.spec, self.ports, secret_values,
                            self.storage_env, self.workdir / f"node{node}")

    def create_key_secret(self, api_key: str) -> None:
        """What ``kubectl create secret generic <secrets.api_key>`` does for the pods that
        mount it: the key appears in each node's mounted file (no restart)."""
        for node in range(len(self.commands)):
            path = Path(self.node_env(node)[KEY_FILE_ENV])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(api_key)
            path.chmod(0o600)

    def serve_config(self) -> dict[str, Any]:
        """The RayService's ``serveConfigV2`` with the Serve port picked here."""
        config = yaml.safe_load(self.manifests["rayservice"]["spec"]["serveConfigV2"])
        config["http_options"]["port"] = self.ports.serve
        return dict(config)

    # -- start and stop ---------------------------------------------------------------------

    def __enter__(self) -> LoopbackCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Redis, the S3 server with the bucket, then the head and the workers."""
        self._start_redis()
        self._start_s3()
        ray = str(Path(sys.executable).with_name("ray"))
        for node, command in enumerate(self.commands):
            env = self.node_env(node)
            for folder in ("HOME", "RAY_TMPDIR"):
                Path(env[folder]).mkdir(parents=True, exist_ok=True)
            for attempt in (1, 2):
                argv = [arg.replace(f"$({KUBERAY_REDIS_PASSWORD})", self.redis_password)
                        for arg in one_host_argv(command, self.ports, node, ray)]
                if self._ray_start(node, command.group, argv, env):
                    break
                self.ports = self.ports.fresh(node)
                # A loaded host can time the node's agents out; its session is stopped.
                self.log(f"node {node}: ray start failed (attempt {attempt}); its session "
                         "was stopped")
                if attempt == 2:
                    tail = (self.workdir / f"ray-start-{node}.log").read_text()[-1500:]
                    raise BackendUnavailable(f"ray start of node {node} failed:\n{tail}")

    def _ray_start(self, node: int, group: str, argv: list[str], env: dict[str, str]) -> bool:
        """One ``ray start`` in a session of its own; False (session stopped) on failure."""
        with open(self.workdir / f"ray-start-{node}.log", "wb") as out:
            proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self.log(f"node {node} ({group}) session {proc.pid}: "
                     f"{' '.join(self._shown(argv))}")
            code = proc.wait(timeout=300)
        if code == 0:
            self._sessions.append(proc.pid)
            return True
        stop_session(proc.pid)
        return False

    def _shown(self, argv: list[str]) -> list[str]:
        return [arg.replace(self.redis_password, "***") for arg in argv]

    def _start_redis(self) -> None:
        data = self.workdir / "redis"
        data.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "redis.conf"  # the ConfigMap's, its data dir moved here
        rendered = self.manifests["redis-configmap"]["data"]["redis.conf"]
        conf.write_text(rendered.replace("dir /data", f"dir {data}"))
        server = shutil.which("redis-server") or "redis-server"
        self._procs.append(start_listening(
            [server, str(conf), "--port", str(self.ports.redis), "--bind", "127.0.0.1",
             "--requirepass", self.redis_password], self.ports.redis, "redis-server", 20))
        self.log(f"redis: 127.0.0.1:{self.ports.redis} (rendered redis.conf, requirepass)")

    def _start_s3(self) -> None:
        import pyarrow.fs as pafs

        self._procs.append(start_listening(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.ports.s3)],
            self.ports.s3, "S3 server (moto)", 60))
        bucket = self.spec.storage.bucket_uri.removeprefix("s3://").split("/", 1)[0]
        env = self.storage_env
        pafs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"],
                          secret_key=env["AWS_SECRET_ACCESS_KEY"], region="us-east-1",
                          endpoint_override=f"127.0.0.1:{self.ports.s3}", scheme="http",
                          allow_bucket_creation=True).create_dir(bucket)
        self.log(f"s3: moto server at {env['AWS_ENDPOINT_URL']}, bucket {bucket}")

    def stop(self) -> None:
        """Stop the nodes' sessions (workers first), then Redis and the S3 server."""
        for sid in reversed(self._sessions):
            stop_session(sid)
        self._sessions.clear()
        for proc in reversed(self._procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._procs.clear()
