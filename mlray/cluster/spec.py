"""The cluster spec: what the rendered KubeRay manifests size and name (``configs/cluster.yaml``).

The platform config says where mlray keeps its state and how it serves; this spec says how
the Kubernetes side looks: images, node groups, Redis, the object store bucket, secret names
and the RayJob limits. Both are typed; :func:`load_cluster_spec` reads the YAML once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlray.config.files import load_yaml_model

__all__ = ["JOB_NAMES", "ClusterSpec", "GpuGroup", "JobSpec", "Jobs", "WorkerGroup",
           "load_cluster_spec"]

#: The jobs a RayJob template is rendered for (modules under ``jobs/``).
JOB_NAMES = ("train", "tune", "materialize", "historical")
_QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
_DNS_LABEL = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PodSize(_Strict):
    """CPU and memory of one pod; requests equal limits, so Ray's view matches the pod's."""

    cpu: int = Field(2, ge=1, le=512, description="Whole CPUs (Ray counts whole CPUs).")
    memory: str = Field("8Gi", pattern=_QUANTITY, description="Kubernetes quantity.")


class WorkerGroup(PodSize):
    """A CPU worker group the in-tree autoscaler sizes between its bounds."""

    min_replicas: int = Field(1, ge=0, le=1000)
    max_replicas: int = Field(4, ge=0, le=1000)

    @field_validator("max_replicas")
    @classmethod
    def _bounds(cls, value: int, info: object) -> int:
        low = getattr(info, "data", {}).get("min_replicas")
        if low is not None and value < low:
            raise ValueError(f"max_replicas {value} is below min_replicas {low}")
        return value


class GpuGroup(WorkerGroup):
    """An optional GPU worker group: its own image, GPU limits, node selector, tolerations."""

    image: str = Field(..., min_length=1, description="A CUDA image with mlray (required).")
    gpus: int = Field(1, ge=1, le=16, description="nvidia.com/gpu per pod.")
    min_replicas: int = Field(0, ge=0, le=1000)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists",
                                  "effect": "NoSchedule"}])


class Secrets(_Strict):
    """Names of the Secrets the manifests reference (created by hand; never rendered)."""

    ray_token: str = Field("mlray-ray-token", pattern=_DNS_LABEL,
                           description="Holds key auth_token: the Ray auth token.")
    redis: str = Field("mlray-redis", pattern=_DNS_LABEL,
                       description="Holds key password: the Redis password.")
    storage: str | None = Field(
        "mlray-storage", pattern=_DNS_LABEL,
        description="Env vars for the object store (AWS_ACCESS_KEY_ID, ...); null = none "
                    "(workload identity).")
    api_key: str | None = Field(
        "mlray-api-key", pattern=_DNS_LABEL,
        description="Holds key api_key: the mlray API key that jobs on the cluster act as, "
                    "mounted as a file (optional: create it after `mlray keys bootstrap`; "
                    "the pods see it without a restart); null = none.")


class Storage(_Strict):
    """Where artifacts and offline data live: one bucket, a folder each."""

    bucket_uri: str = Field("s3://mlray", pattern=r"^(s3|gs)://[a-z0-9][a-z0-9.-]{1,62}(/.*)?$")
    endpoint_url: str | None = Field(
        None, description="An S3-compatible endpoint (MinIO); null = the provider's own.")


class Redis(PodSize):
    """The Redis StatefulSet holding mlray state, online features, streams and GCS data."""

    image: str = Field("redis:7.4", min_length=1)
    cpu: int = Field(1, ge=1, le=64)
    memory: str = Field("4Gi", pattern=_QUANTITY)
    storage: str = Field("20Gi", pattern=_QUANTITY, description="Size of the data volume.")
    storage_class: str | None = Field(None, description="null = the cluster's default.")
    appendfsync: Literal["everysec", "always"] = Field(
        "everysec", description="everysec: at most ~1 s of acknowledged writes lost if the "
                                "node dies; always: none lost, every write waits for fsync.")


class JobSpec(_Strict):
    """One RayJob template: the job module's arguments and its limits."""

    args: str = Field("", description="Arguments after `python -m jobs.<name>`.")
    active_deadline_s: int = Field(3600, ge=1, description="activeDeadlineSeconds.")
    backoff_limit: int = Field(0, ge=0, le=10, description="Retries (standalone mode only).")
    ttl_s: int = Field(600, ge=0, description="ttlSecondsAfterFinished (standalone mode).")


class Jobs(_Strict):
    """The RayJob templates, one per job module; a job left out gets the defaults."""

    train: JobSpec = Field(default_factory=JobSpec)
    tune: JobSpec = Field(default_factory=JobSpec)
    materialize: JobSpec = Field(default_factory=JobSpec)
    historical: JobSpec = Field(default_factory=JobSpec)


class ClusterSpec(_Strict):
    """How the KubeRay side of one mlray platform looks (``configs/cluster.yaml``)."""

    name: str = Field("mlray", pattern=_DNS_LABEL, description="RayCluster / RayService name.")
    namespace: str = Field("mlray", pattern=_DNS_LABEL, description="Kubernetes namespace.")
    image: str = Field("mlray:0.1.0", min_length=1, description="Built from cluster/Dockerfile.")
    ray_version: str = Field("2.60.0", pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    metrics_export_port: int = Field(8080, ge=1024, le=65535)
    control_resource: str = Field("mlray-control", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$",
                                  description="Custom resource only the head offers.")
    head: PodSize = Field(default_factory=PodSize)
    cpu_workers: WorkerGroup = Field(default_factory=WorkerGroup)
    gpu_workers: GpuGroup | None = None
    idle_timeout_s: int = Field(60, ge=1, description="Autoscaler: idle seconds before removal.")
    secrets: Secrets = Field(default_factory=Secrets)
    storage: Storage = Field(default_factory=Storage)
    redis: Redis = Field(default_factory=Redis)
    jobs: Jobs = Field(default_factory=Jobs)
    jobs_standalone: bool = Field(
        False, description="RayJobs bring their own cluster (rayClusterSpec) instead of "
                           "using the RayCluster (clusterSelector).")

    def job(self, name: str) -> JobSpec:
        """The spec of job ``name`` (defaults when the file leaves it out)."""
        found: JobSpec = getattr(self.jobs, name)
        return found


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    """Read a cluster spec file.

    Raises:
        ConfigError: one line naming the file, the key and the reason.
    """
    return load_yaml_model(path, ClusterSpec)
