"""The RayCluster spec (head, worker groups, autoscaling, GCS fault tolerance, token auth),
shared by the RayCluster, the RayService's cluster and standalone RayJobs."""

from __future__ import annotations

import shlex
from typing import Any

from mlray.cluster.commands import (
    API_KEY_DIR,
    CONFIG_DIR,
    REDIS_PASSWORD_KEY,
    PodCommand,
    ray_start_commands,
    redis_host,
)
from mlray.cluster.spec import ClusterSpec, PodSize
from mlray.config import PlatformConfig

__all__ = ["POD_LABELS", "platform_configmap_name", "ray_cluster_spec"]

#: Labels on every Ray pod (the PodMonitor selects on them).
POD_LABELS = {"app.kubernetes.io/name": "mlray", "app.kubernetes.io/component": "ray"}
Manifest = dict[str, Any]


def platform_configmap_name(spec: ClusterSpec) -> str:
    """The ConfigMap holding the settings files the platform config names."""
    return f"{spec.name}-platform"


def _resources(size: PodSize, gpus: int = 0) -> Manifest:
    amounts: dict[str, Any] = {"cpu": str(size.cpu), "memory": size.memory}
    if gpus:
        amounts["nvidia.com/gpu"] = str(gpus)
    return {"limits": amounts, "requests": dict(amounts)}


def _env(command: PodCommand) -> list[Manifest]:
    """Secrets first: Kubernetes expands ``$(NAME)`` only to variables defined earlier."""
    env = [{"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
           for name, ref in command.secrets.items()]
    return env + [{"name": name, "value": value} for name, value in command.env.items()]


def _ports(command: PodCommand, spec: ClusterSpec, config: PlatformConfig) -> list[Manifest]:
    ports = [{"containerPort": spec.metrics_export_port, "name": "metrics"}]
    if command.is_head:
        ports = [{"containerPort": 6379, "name": "gcs-server"},
                 {"containerPort": 8265, "name": "dashboard"},
                 {"containerPort": 10001, "name": "client"},
                 {"containerPort": config.serve_port, "name": "serve"}, *ports]
    return ports


def _template(command: PodCommand, spec: ClusterSpec, config: PlatformConfig) -> Manifest:
    gpu = spec.gpu_workers if command.group == "gpu" else None
    size: PodSize = {"head": spec.head, "cpu": spec.cpu_workers}.get(command.group, gpu)  # type: ignore[assignment]
    container: Manifest = {
        "name": "ray-head" if command.is_head else "ray-worker",
        "image": gpu.image if gpu else spec.image,
        "env": _env(command),
        "ports": _ports(command, spec, config),
        "resources": _resources(size, gpu.gpus if gpu else 0),
    }
    if command.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": command.env_from_secret}}]
    pod: Manifest = {"containers": [container]}
    mounts: list[Manifest] = []
    volumes: list[Manifest] = []
    if command.files:
        mounts.append({"name": "platform-config", "mountPath": CONFIG_DIR, "readOnly": True})
        volumes.append({"name": "platform-config",
                        "configMap": {"name": platform_configmap_name(spec)}})
    if command.key_secret:  # optional: created after `mlray keys bootstrap`, seen live
        mounts.append({"name": "api-key", "mountPath": API_KEY_DIR, "readOnly": True})
        volumes.append({"name": "api-key",
                        "secret": {"secretName": command.key_secret, "optional": True}})
    if mounts:
        container["volumeMounts"], pod["volumes"] = mounts, volumes
    if gpu is not None:
        pod["tolerations"] = [dict(t) for t in gpu.tolerations]
        if gpu.node_selector:
            pod["nodeSelector"] = dict(gpu.node_selector)
    return {"metadata": {"labels": {**POD_LABELS, "mlray.io/group": command.group}},
            "spec": pod}


def _params(command: PodCommand) -> dict[str, str]:
    """``rayStartParams``: KubeRay pastes each into a shell line, so quote what needs it."""
    return {key: shlex.quote(value) for key, value in command.params.items()}


def ray_cluster_spec(spec: ClusterSpec, config: PlatformConfig) -> Manifest:
    """The ``spec`` of a RayCluster (also ``rayClusterConfig`` / ``rayClusterSpec``)."""
    head, *workers = ray_start_commands(spec, config)
    groups = []
    for command in workers:
        group = spec.cpu_workers if command.group == "cpu" else spec.gpu_workers
        assert group is not None
        groups.append({"groupName": command.group, "replicas": group.min_replicas,
                       "minReplicas": group.min_replicas, "maxReplicas": group.max_replicas,
                       "rayStartParams": _params(command),
                       "template": _template(command, spec, config)})
    return {
        "rayVersion": spec.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": spec.idle_timeout_s,
                              "upscalingMode": "Default"},
        # KubeRay sets RAY_AUTH_MODE / RAY_AUTH_TOKEN from this Secret too; the
        # containers carry them explicitly so a run outside Kubernetes sees the same.
        "authOptions": {"mode": "token", "secretName": spec.secrets.ray_token},
        # No externalStorageNamespace: KubeRay uses the cluster's UID, so the old and new
        # clusters of a RayService upgrade never share GCS data in the same Redis.
        "gcsFaultToleranceOptions": {
            "redisAddress": f"{redis_host(spec)}:6379",
            "redisPassword": {"valueFrom": {"secretKeyRef": {
                "name": spec.secrets.redis, "key": REDIS_PASSWORD_KEY}}}},
        "headGroupSpec": {"rayStartParams": _params(head),
                          "template": _template(head, spec, config)},
        "workerGroupSpecs": groups,
    }
