"""KubeRay manifests rendered from the platform config and a cluster spec."""

from mlray.cluster.commands import PodCommand, SecretRef, expand_env, ray_start_commands
from mlray.cluster.render import dump_manifest, render_manifests, write_manifests
from mlray.cluster.spec import ClusterSpec, load_cluster_spec

__all__ = ["ClusterSpec", "PodCommand", "SecretRef", "dump_manifest", "expand_env",
           "load_cluster_spec", "ray_start_commands", "render_manifests", "write_manifests"]
