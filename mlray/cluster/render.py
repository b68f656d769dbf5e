"""Render every manifest of one platform from its config and cluster spec.

Pure functions: the same inputs give the same dicts and the same YAML text (keys sorted),
so a checked-in rendering can be compared with a fresh one.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from mlray.cluster.commands import FILE_KEYS
from mlray.cluster.raycluster import POD_LABELS, platform_configmap_name, ray_cluster_spec
from mlray.cluster.redis import redis_manifests
from mlray.cluster.spec import JOB_NAMES, ClusterSpec
from mlray.config import PlatformConfig
from mlray.config.files import read_yaml
from mlray.errors import ConfigError

__all__ = ["SERVE_CONFIG", "dump_manifest", "render_manifests", "serve_config",
           "write_manifests"]

#: The Serve config the RayService embeds (the ingress app; models are deployed apart).
SERVE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "serve.yaml"
Manifest = dict[str, Any]


def _meta(spec: ClusterSpec, name: str, **labels: str) -> Manifest:
    return {"name": name, "namespace": spec.namespace,
            "labels": {"app.kubernetes.io/name": "mlray", **labels}}


def serve_config(config: PlatformConfig, path: Path = SERVE_CONFIG) -> Manifest:
    """``configs/serve.yaml`` with the platform's Serve port and the ingress's args
    (namespace, project) taken from the platform config, and ``auth: keys``: a cluster's
    proxies bind every interface, so every request must present an API key."""
    data = read_yaml(path)
    data.setdefault("http_options", {})["port"] = config.serve_port
    for app in data.get("applications", []):
        if app.get("import_path") == "mlray.serving.ingress:build_app":
            app["args"] = {**app.get("args", {}), "namespace": config.namespace,
                           "project": config.project, "auth": "keys"}
    return data


def _file_contents(config: PlatformConfig) -> dict[str, str]:
    """The text of each settings file the platform config names, by its ConfigMap key.

    Raises:
        ConfigError: a named file cannot be read (names the key).
    """
    contents = {}
    for key, name in FILE_KEYS.items():
        path = getattr(config, key)
        if path is None:
            continue
        try:
            contents[name] = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{key}: {path} cannot be read for the pods' ConfigMap: "
                              f"{exc.strerror or exc}", field=key) from None
    return contents


def _rayjob(spec: ClusterSpec, config: PlatformConfig, job: str) -> Manifest:
    """A RayJob running ``python -m jobs.<job>``: against the RayCluster (clusterSelector;
    KubeRay allows no retries and no shutdown there) or on its own cluster."""
    limits = spec.job(job)
    body: Manifest = {
        "entrypoint": shlex.join(["python", "-m", f"jobs.{job}", *shlex.split(limits.args)]),
        "submissionMode": "K8sJobMode",
        "activeDeadlineSeconds": limits.active_deadline_s,
    }
    if spec.jobs_standalone:
        body.update(rayClusterSpec=ray_cluster_spec(spec, config), shutdownAfterJobFinishes=True,
                    ttlSecondsAfterFinished=limits.ttl_s, backoffLimit=limits.backoff_limit)
    else:
        body.update(clusterSelector={"ray.io/cluster": spec.name},
                    shutdownAfterJobFinishes=False)
    return {"apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": _meta(spec, f"{spec.name}-{job}", **{"mlray.io/job": job}),
            "spec": body}


def render_manifests(spec: ClusterSpec, config: PlatformConfig,
                     serve_path: Path = SERVE_CONFIG) -> dict[str, Manifest]:
    """Every manifest, by file stem: RayCluster, RayService, a RayJob per job, Redis
    (ConfigMap, Service, StatefulSet), a PodMonitor, and the ``<name>-platform`` ConfigMap
    when the platform config names settings files (serving, alerts), which every Ray pod
    mounts at ``/etc/mlray``. Secrets are referenced only. The platform runs with ``auth:
    keys`` whatever ``config.auth`` says: ``none`` is for loopback only, and a cluster's
    proxies bind 0.0.0.0.
    """
    cluster = ray_cluster_spec(spec, config)
    manifests: dict[str, Manifest] = {
        "raycluster": {"apiVersion": "ray.io/v1", "kind": "RayCluster",
                       "metadata": _meta(spec, spec.name), "spec": cluster},
        "rayservice": {"apiVersion": "ray.io/v1", "kind": "RayService",
                       "metadata": _meta(spec, f"{spec.name}-serve"),
                       "spec": {"serveConfigV2": yaml.safe_dump(serve_config(config, serve_path),
                                                                sort_keys=True),
                                # A new cluster comes up beside the old one; traffic moves
                                # when its apps are healthy (zero downtime).
                                "upgradeStrategy": {"type": "NewCluster"},
                                "rayClusterConfig": ray_cluster_spec(spec, config)}},
    }
    for job in JOB_NAMES:
        manifests[f"rayjob-{job}"] = _rayjob(spec, config, job)
    files = _file_contents(config)
    if files:
        manifests["platform-configmap"] = {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(spec, platform_configmap_name(spec)), "data": files}
    manifests.update(redis_manifests(spec))
    manifests["podmonitor"] = {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": _meta(spec, f"{spec.name}-ray"),
        "spec": {"selector": {"matchLabels": dict(POD_LABELS)},
                 "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics",
                                          "interval": "15s"}]}}
    return manifests


HEADER = "# Rendered by `mlray cluster render`: edit configs/cluster.yaml, not this file.\n"


class _PlainDumper(yaml.SafeDumper):
    """Writes a repeated mapping out again instead of as an anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_manifest(manifest: Manifest) -> str:
    """One manifest as YAML text, keys sorted (stable across runs), no anchors."""
    return HEADER + yaml.dump(manifest, Dumper=_PlainDumper, sort_keys=True, width=100)


def write_manifests(manifests: dict[str, Manifest], out: Path) -> list[Path]:
    """Write one ``<stem>.yaml`` per manifest into ``out``; stale ``.yaml`` files there
    that an earlier rendering wrote (they start with its header) and this one does not
    produce are removed; other files are left alone. Returns the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, manifest in sorted(manifests.items()):
        path = out / f"{stem}.yaml"
        path.write_text(dump_manifest(manifest))
        written.append(path)
    for old in out.glob("*.yaml"):
        if old not in written and old.read_text().startswith(HEADER):
            old.unlink()
    return written
