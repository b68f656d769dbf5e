"""Every rendered manifest against the KubeRay v1 CRDs (strict: an unknown field fails, as
`kubectl apply` with server-side field validation would) and the core objects against the
Kubernetes schemas of a named release (kubernetes-validate, strict)."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from mlray.cluster import ClusterSpec, render_manifests
from mlray.cluster.spec import load_cluster_spec
from mlray.config import PlatformConfig

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "cluster" / "crds"
SPEC_FILE = ROOT / "configs" / "cluster.yaml"
KUBERNETES_VERSION = "1.33.0"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
             "RayService": "ray.io_rayservices.yaml"}


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 3 MB of YAML


def _strict(schema: Any) -> Any:
    """The schema with unknown properties refused wherever the CRD lists the known ones."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in schema and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    crd = yaml.load((CRDS / CRD_FILES[kind]).read_text(), Loader=_LOADER)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def crd_errors(manifest: dict[str, Any]) -> list[str]:
    errors = crd_validator(manifest["kind"]).iter_errors(manifest)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def _variants() -> dict[str, dict[str, dict[str, Any]]]:
    spec = load_cluster_spec(SPEC_FILE)
    config = PlatformConfig()
    return {"example": render_manifests(spec, config),
            "standalone-jobs": render_manifests(spec.model_copy(update={"jobs_standalone": True}),
                                                config),
            "cpu-only": render_manifests(ClusterSpec(), config),
            "settings-files": render_manifests(spec, PlatformConfig(
                serving_config=ROOT / "configs" / "serving.yaml",
                alerts_config=ROOT / "configs" / "alerts.yaml"))}


VARIANTS = _variants()
RENDERED = [(variant, stem, m) for variant, ms in VARIANTS.items() for stem, m in ms.items()]


@pytest.mark.parametrize(("variant", "stem", "manifest"),
                         [r for r in RENDERED if r[2]["kind"] in CRD_FILES],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_kuberay_manifests_match_the_crds(variant: str, stem: str,
                                          manifest: dict[str, Any]) -> None:
    assert crd_errors(manifest) == []


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    bad = copy.deepcopy(VARIANTS["example"]["raycluster"])
    bad["spec"]["enableInTreeAutoscalling"] = bad["spec"].pop("enableInTreeAutoscaling")
    bad["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "4"
    errors = crd_errors(bad)
    assert any("enableInTreeAutoscalling" in e for e in errors)
    assert any(e.startswith("spec/workerGroupSpecs/0/maxReplicas") for e in errors)


def _pod_templates(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Ray pod template inside a KubeRay manifest."""
    spec = manifest["spec"]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or (
        spec if manifest["kind"] == "RayCluster" else None)
    if cluster is None:
        return []
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [g["template"] for g in groups]


def _core_objects() -> list[tuple[str, dict[str, Any]]]:
    """Core kinds as they are; the Ray pod templates as PodTemplates. The PodMonitor is a
    Prometheus-operator CRD the validator does not ship (its fields are checked in
    test_cluster_render)."""
    found = []
    for variant, stem, manifest in RENDERED:
        if manifest["apiVersion"].startswith("ray.io/"):
            found += [(f"{variant}-{stem}-pod{i}",
                       {"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": f"{stem}-{i}"}, "template": template})
                      for i, template in enumerate(_pod_templates(manifest))]
        elif not manifest["apiVersion"].startswith("monitoring.coreos.com/"):
            found.append((f"{variant}-{stem}", manifest))
    return found


CORE = _core_objects()


@pytest.mark.parametrize("obj", [o for _, o in CORE], ids=[i for i, _ in CORE])
def test_core_objects_match_kubernetes(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_check_refuses_a_bad_pod() -> None:
    template = copy.deepcopy(_pod_templates(VARIANTS["example"]["raycluster"])[0])
    template["spec"]["containers"][0]["envv"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate",
                                      "metadata": {"name": "x"}, "template": template},
                                     KUBERNETES_VERSION, strict=True)


def kuberay_rule_errors(manifest: dict[str, Any]) -> list[str]:
    """What the KubeRay operator's own validation (ValidateRayClusterSpec, ValidateRayJobSpec,
    ValidateRayServiceSpec) refuses beyond the schema, for the fields mlray renders."""
    errors = []
    name, spec = manifest["metadata"]["name"], manifest["spec"]
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 47:
        errors.append(f"name {name!r} is not a DNS-1035 label KubeRay accepts")
    if manifest["kind"] == "RayJob":
        if ("clusterSelector" in spec) == ("rayClusterSpec" in spec):
            errors.append("one of rayClusterSpec or clusterSelector must be set")
        if "clusterSelector" in spec:
            if not spec["clusterSelector"].get("ray.io/cluster"):
                errors.append("clusterSelector names no cluster")
            if spec.get("backoffLimit", 0) > 0:
                errors.append("backoffLimit is incompatible with clusterSelector")
        if not spec.get("shutdownAfterJobFinishes") and spec.get("ttlSecondsAfterFinished", 0):
            errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
        if spec.get("activeDeadlineSeconds", 1) <= 0:
            errors.append("activeDeadlineSeconds must be positive")
    if manifest["kind"] == "RayService":
        if spec.get("upgradeStrategy", {}).get("type") not in (
                None, "NewCluster", "NewClusterWithIncrementalUpgrade", "None"):
            errors.append("unknown upgradeStrategy.type")
        if spec["rayClusterConfig"]["headGroupSpec"].get("headService", {}).get(
                "metadata", {}).get("name"):
            errors.append("a RayService's head service must not be named")
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec") or (
        spec if manifest["kind"] == "RayCluster" else None)
    if cluster is not None and cluster.get("gcsFaultToleranceOptions"):
        head = cluster["headGroupSpec"]
        env = {e["name"] for e in head["template"]["spec"]["containers"][0].get("env", [])}
        errors += [f"head env sets {var} (KubeRay sets it from gcsFaultToleranceOptions)"
                   for var in ("REDIS_PASSWORD", "RAY_REDIS_ADDRESS", "REDIS_USERNAME")
                   if var in env]
        errors += [f"rayStartParams sets {p}" for p in ("redis-password", "redis-username")
                   if p in head["rayStartParams"]]
    return errors


@pytest.mark.parametrize(("variant", "stem", "manifest"),
                         [r for r in RENDERED if r[2]["kind"] in CRD_FILES],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_kuberay_manifests_pass_the_operators_own_rules(variant: str, stem: str,
                                                        manifest: dict[str, Any]) -> None:
    assert kuberay_rule_errors(manifest) == []


def test_the_operator_rules_refuse_a_head_that_sets_redis_password() -> None:
    bad = copy.deepcopy(VARIANTS["example"]["raycluster"])
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "REDIS_PASSWORD", "value": "x"})
    assert kuberay_rule_errors(bad) == [
        "head env sets REDIS_PASSWORD (KubeRay sets it from gcsFaultToleranceOptions)"]
