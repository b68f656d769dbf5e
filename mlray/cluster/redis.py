"""The Redis that holds mlray's state, online features, streams and Ray's GCS data.

One replica with a persistent volume and append-only persistence. ``appendfsync everysec``
(the default) fsyncs the log once a second: a Redis process crash loses nothing (the
kernel still holds the writes), a node crash loses at most about a second of acknowledged
writes. ``always`` loses none but makes every write wait for the disk.
"""

from __future__ import annotations

from typing import Any

from mlray.cluster.commands import REDIS_PASSWORD_ENV, REDIS_PASSWORD_KEY
from mlray.cluster.spec import ClusterSpec

__all__ = ["redis_conf", "redis_manifests"]

Manifest = dict[str, Any]
#: Labels on every Redis object; the Service and StatefulSet select on them.
_LABELS = {"app.kubernetes.io/name": "mlray", "app.kubernetes.io/component": "redis"}


def redis_conf(spec: ClusterSpec) -> str:
    """The redis.conf the ConfigMap carries (the password comes on the command line)."""
    return "\n".join([
        "# Rendered by `mlray cluster render`; see mlray/cluster/redis.py for the choices.",
        "dir /data",
        "appendonly yes",
        f"appendfsync {spec.redis.appendfsync}",
        "aof-use-rdb-preamble yes",
        # mlray state and Ray's GCS data must never be evicted.
        "maxmemory-policy noeviction",
        "protected-mode no",
        "",
    ])


def _meta(spec: ClusterSpec, name: str) -> Manifest:
    return {"name": name, "namespace": spec.namespace, "labels": dict(_LABELS)}


def redis_manifests(spec: ClusterSpec) -> dict[str, Manifest]:
    """ConfigMap, headless Service and StatefulSet of the rendered Redis, by file stem."""
    name = f"{spec.name}-redis"
    labels = dict(_LABELS)
    probe = {"exec": {"command": ["sh", "-c", f'redis-cli -a "${REDIS_PASSWORD_ENV}" '
                                              "--no-auth-warning ping | grep -q PONG"]},
             "periodSeconds": 5}
    claim: Manifest = {"metadata": {"name": "data"},
                       "spec": {"accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": spec.redis.storage}}}}
    if spec.redis.storage_class:
        claim["spec"]["storageClassName"] = spec.redis.storage_class
    size = {"cpu": str(spec.redis.cpu), "memory": spec.redis.memory}
    container = {
        "name": "redis", "image": spec.redis.image,
        "command": ["redis-server"],
        # Kubernetes expands $(STATE_REDIS_PASSWORD) from the Secret-backed variable.
        "args": ["/etc/redis/redis.conf", "--requirepass", f"$({REDIS_PASSWORD_ENV})"],
        "env": [{"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {
            "name": spec.secrets.redis, "key": REDIS_PASSWORD_KEY}}}],
        "ports": [{"containerPort": 6379, "name": "redis"}],
        "readinessProbe": probe, "livenessProbe": {**probe, "initialDelaySeconds": 15},
        "resources": {"limits": size, "requests": dict(size)},
        "volumeMounts": [{"name": "data", "mountPath": "/data"},
                         {"name": "config", "mountPath": "/etc/redis"}],
    }
    return {
        "redis-configmap": {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": _meta(spec, name),
                            "data": {"redis.conf": redis_conf(spec)}},
        "redis-service": {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, name),
                          "spec": {"clusterIP": "None", "selector": labels,
                                   "ports": [{"name": "redis", "port": 6379,
                                              "targetPort": "redis"}]}},
        "redis-statefulset": {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(spec, name),
            "spec": {"serviceName": name, "replicas": 1,
                     "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container],
                                           "volumes": [{"name": "config", "configMap": {
                                               "name": name}}]}},
                     "volumeClaimTemplates": [claim]}},
    }
