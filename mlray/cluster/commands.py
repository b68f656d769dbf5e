"""What each rendered Ray pod runs: the ``ray start`` parameters and the environment.

The RayCluster's containers are built from :func:`ray_start_commands`, and so is anything
that starts the same nodes outside Kubernetes (a loopback simulation of the cluster), so
the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from mlray.auth import KEY_FILE_ENV
from mlray.cluster.spec import ClusterSpec
from mlray.config import PlatformConfig
from mlray.errors import ConfigError

__all__ = ["API_KEY_DIR", "API_KEY_KEY", "CONFIG_DIR", "FILE_KEYS",
           "LOCATION_KEYS", "REDIS_PASSWORD_ENV", "PodCommand", "SecretRef", "cluster_urls",
           "expand_env", "platform_files", "ray_start_commands", "redis_host"]

#: Env var holding the Redis password in every pod (from the Secret); URLs refer to it. Not
#: ``REDIS_PASSWORD``: KubeRay sets that one on the head itself (GCS fault tolerance) and
#: refuses a head container that already has it.
REDIS_PASSWORD_ENV = "STATE_REDIS_PASSWORD"
RAY_TOKEN_KEY = "auth_token"  # the key KubeRay's authOptions reads in the token Secret
REDIS_PASSWORD_KEY = "password"
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
#: Where the pods find the platform's settings files (the ``<name>-platform`` ConfigMap).
CONFIG_DIR = "/etc/mlray"
#: PlatformConfig keys naming such files, with the file's name in the ConfigMap.
FILE_KEYS = {"serving_config": "serving.yaml", "alerts_config": "alerts.yaml"}
#: Where the pods find the API key Secret (``secrets.api_key``, mounted optional); the
#: pods' ``MLRAY_API_KEY_FILE`` names the file in it (read by ``mlray.connect``).
API_KEY_DIR = "/etc/mlray-key"
API_KEY_KEY = "api_key"


@dataclass(frozen=True)
class SecretRef:
    """One key of a Kubernetes Secret."""

    name: str
    key: str


@dataclass(frozen=True)
class PodCommand:
    """How one kind of Ray pod starts: ``ray start`` parameters and environment.

    Attributes:
        group: ``head``, or the worker group's name (``cpu``, ``gpu``).
        params: ``ray start`` options without the dashes (KubeRay's ``rayStartParams``);
            values are plain, unquoted.
        env: plain variables; a value may refer to another variable as ``$(NAME)``, which
            Kubernetes expands (see :func:`expand_env`).
        secrets: variables read from Secrets (set before ``env``, so ``env`` may refer
            to them).
        env_from_secret: a Secret whose every key becomes a variable (object store
            credentials), or None.
        files: files the pod reads, by their path in the pod, with the file on this
            machine they are rendered from (the platform ConfigMap, mounted at
            ``CONFIG_DIR``); ``env`` names the in-pod paths.
        key_secret: the API key Secret, mounted (optional) at ``API_KEY_DIR``, or None.
    """

    group: str
    params: dict[str, str]
    env: dict[str, str]
    secrets: dict[str, SecretRef] = field(default_factory=dict)
    env_from_secret: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    key_secret: str | None = None

    @property
    def is_head(self) -> bool:
        """Is this the head pod's command?"""
        return self.group == "head"

    def argv(self, head_address: str | None = None) -> list[str]:
        """The ``ray start`` command line as KubeRay builds it from ``params`` (workers
        join ``head_address``, host:port of the GCS; ``--block`` keeps the pod's process
        in the foreground)."""
        argv = ["ray", "start", "--head"] if self.is_head else ["ray", "start"]
        if not self.is_head:
            if not head_address:
                raise ValueError(f"worker group {self.group!r} needs the head's address")
            argv.append(f"--address={head_address}")
        argv += [f"--{key}={value}" for key, value in sorted(self.params.items())]
        return [*argv, "--block"]

    def environ(self, secret_values: Mapping[SecretRef, str]) -> dict[str, str]:
        """The variables a pod sees, given the Secrets' values (``$(NAME)`` expanded)."""
        values = {name: secret_values[ref] for name, ref in self.secrets.items()}
        return expand_env({**values, **self.env})


def expand_env(env: Mapping[str, str]) -> dict[str, str]:
    """Expand ``$(NAME)`` references the way Kubernetes does: to a variable defined earlier
    in ``env``; an unknown reference stays as written."""
    done: dict[str, str] = {}
    for name, value in env.items():
        done[name] = _REF.sub(lambda m: done.get(m.group(1), m.group(0)), value)
    return done


def redis_host(spec: ClusterSpec) -> str:
    """The in-cluster DNS name of the rendered Redis service."""
    return f"{spec.name}-redis.{spec.namespace}.svc.cluster.local"


#: PlatformConfig keys that say where state lives; on a cluster each must be shared.
LOCATION_KEYS = ("state_url", "online_url", "stream_url", "artifact_uri", "offline_uri",
                 "storage_uri")


def cluster_urls(spec: ClusterSpec, config: PlatformConfig | None = None) -> dict[str, str]:
    """The platform's storage locations in cluster mode, by PlatformConfig key.

    By default: the rendered Redis for state (db 0), online features (db 1) and streams
    (db 2), its password read from ``$(STATE_REDIS_PASSWORD)``; the spec's bucket for
    artifacts, offline data and Ray Train / Tune runs (``storage_uri``: a node-local one
    is refused on more than one node). A key the platform ``config`` sets explicitly (an
    external Redis, another bucket) wins, if every node can reach it.

    Raises:
        ConfigError: an explicit location is node-local (a path, ``sqlite://``), or its
            URL carries a password the manifests would inline; names the key.
    """
    redis = f"redis://:$({REDIS_PASSWORD_ENV})@{redis_host(spec)}:6379"
    bucket = spec.storage.bucket_uri.rstrip("/")
    urls = {"state_url": f"{redis}/0", "online_url": f"{redis}/1", "stream_url": f"{redis}/2",
            "artifact_uri": f"{bucket}/artifacts", "offline_uri": f"{bucket}/offline",
            "storage_uri": f"{bucket}/ray-train"}
    for key in LOCATION_KEYS:
        value = getattr(config, key, None) if config is not None else None
        if value and key in config.model_fields_set:  # type: ignore[union-attr]
            urls[key] = _shared_location(key, str(value))
    return urls


def _shared_location(key: str, value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme in ("", "file", "sqlite"):
        raise ConfigError(f"{key}: {value} is on one node's disk; a cluster needs redis:// "
                          f"or an object store URI (or leave {key} out to use the rendered "
                          "Redis and bucket)", field=key)
    if parsed.password and parsed.password != f"$({REDIS_PASSWORD_ENV})":
        raise ConfigError(f"{key}: the URL carries a password the manifests would inline; "
                          f"write $({REDIS_PASSWORD_ENV}) in its place (the pods read it "
                          "from the Redis Secret)", field=key)
    return value


def _platform_env(spec: ClusterSpec, config: PlatformConfig) -> dict[str, str]:
    """MLRAY_* variables: the platform config every process in the pod loads (``auth:
    keys`` always: pods serve other machines)."""
    # The control-plane actors ask for a sliver of the resource only the head offers.
    pinned = dict(config.actor_resources) or {spec.control_resource: 0.01}
    values = {"home": "/tmp/mlray", "namespace": config.namespace, "project": config.project,
              "auth": "keys",  # the cluster binds 0.0.0.0: auth none is for loopback only
              "redis_prefix": config.redis_prefix, "serve_port": str(config.serve_port),
              "actor_num_cpus": str(config.actor_num_cpus),
              "actor_resources": json.dumps(pinned, sort_keys=True),
              **cluster_urls(spec, config),
              **{key: f"{CONFIG_DIR}/{name}" for key, name in FILE_KEYS.items()
                 if getattr(config, key)}}
    env = {f"MLRAY_{key.upper()}": value for key, value in sorted(values.items())}
    env["RAY_AUTH_MODE"] = "token"
    if spec.secrets.api_key:
        env[KEY_FILE_ENV] = f"{API_KEY_DIR}/{API_KEY_KEY}"
    if spec.storage.endpoint_url:
        env["AWS_ENDPOINT_URL"] = spec.storage.endpoint_url
    return env


def platform_files(config: PlatformConfig) -> dict[str, Path]:
    """The settings files the platform config names, by their path in the pods."""
    named = {key: getattr(config, key) for key in FILE_KEYS}
    return {f"{CONFIG_DIR}/{FILE_KEYS[key]}": path for key, path in named.items() if path}


def _secret_env(spec: ClusterSpec) -> dict[str, SecretRef]:
    return {"RAY_AUTH_TOKEN": SecretRef(spec.secrets.ray_token, RAY_TOKEN_KEY),
            REDIS_PASSWORD_ENV: SecretRef(spec.secrets.redis, REDIS_PASSWORD_KEY)}


def ray_start_commands(spec: ClusterSpec, config: PlatformConfig) -> list[PodCommand]:
    """The head's and each worker group's ``ray start`` parameters and environment, exactly
    as the rendered pods carry them (the renderer builds its containers from this list).

    The head offers no CPUs to user work (``num-cpus: 0``) and ``spec.control_resource``,
    of which each control-plane actor asks 0.01 (``MLRAY_ACTOR_RESOURCES``, unless the
    platform config sets ``actor_resources``), so the actors run on the head. Every node
    exports metrics on ``spec.metrics_export_port``. Every container runs with Ray token
    auth (``RAY_AUTH_MODE=token``, the token from the ``secrets.ray_token`` Secret), the
    cluster-mode platform config as ``MLRAY_*`` variables, and the ``secrets.api_key``
    Secret as a file (``MLRAY_API_KEY_FILE``): the key jobs started there act as.

    Returns:
        ``[head, cpu workers, gpu workers (when the spec has a GPU group)]``.
    """
    env, secrets, files = _platform_env(spec, config), _secret_env(spec), platform_files(config)
    common = {"metrics-export-port": str(spec.metrics_export_port)}
    head = {**common, "num-cpus": "0", "dashboard-host": "0.0.0.0",
            "resources": json.dumps({spec.control_resource: 100})}
    groups = {"head": head, "cpu": {**common, "num-cpus": str(spec.cpu_workers.cpu)}}
    if spec.gpu_workers is not None:
        groups["gpu"] = {**common, "num-cpus": str(spec.gpu_workers.cpu),
                         "num-gpus": str(spec.gpu_workers.gpus)}
    return [PodCommand(group, params, env, secrets, spec.secrets.storage, files,
                       spec.secrets.api_key) for group, params in groups.items()]
