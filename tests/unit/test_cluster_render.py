"""The cluster renderer: the checked-in examples, the pods' commands, refusals of bad specs."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import yaml

from mlray.cli.main import main
from mlray.cluster import (
    ClusterSpec,
    SecretRef,
    load_cluster_spec,
    ray_start_commands,
    render_manifests,
    write_manifests,
)
from mlray.cluster.render import dump_manifest
from mlray.config import PlatformConfig, load_config
from mlray.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SPEC_FILE = ROOT / "configs" / "cluster.yaml"
EXAMPLES = ROOT / "cluster" / "examples"
REGENERATE = "mlray cluster render --out cluster/examples"


def _example() -> tuple[ClusterSpec, PlatformConfig]:
    return load_cluster_spec(SPEC_FILE), load_config(env={})


def test_checked_in_examples_equal_a_fresh_rendering() -> None:
    manifests = render_manifests(*_example())
    files = {p.name: p.read_text() for p in EXAMPLES.glob("*.yaml")}
    fresh = {f"{stem}.yaml": dump_manifest(m) for stem, m in manifests.items()}
    assert sorted(files) == sorted(fresh), f"cluster/examples is stale: run `{REGENERATE}`"
    for name, text in fresh.items():
        assert files[name] == text, f"cluster/examples/{name} is stale: run `{REGENERATE}`"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MLRAY_* variable of the calling shell reaches the CLI's platform config."""
    for name in list(os.environ):
        if name.startswith("MLRAY_"):
            monkeypatch.delenv(name)


def test_cli_writes_one_file_per_manifest(tmp_path: Path, clean_env: None) -> None:
    (tmp_path / "mine.yaml").write_text("kind: Keep\n")  # not ours: left alone
    (tmp_path / "old.yaml").write_text(dump_manifest({"kind": "Stale"}))  # ours: removed
    code = main(["cluster", "render", "--spec", str(SPEC_FILE), "--out", str(tmp_path)])
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert "old.yaml" not in names and "mine.yaml" in names
    assert sorted(set(names) - {"mine.yaml"}) == sorted(p.name for p in EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize(("text", "key"), [
    ("gpu_workers: {max_replicas: 2}\n", "gpu_workers.image"),
    ("cpu_workers: {min_replicas: 5, max_replicas: 2}\n", "cpu_workers.max_replicas"),
    ("gpu_workers: {image: g, min_replicas: 3, max_replicas: 1}\n", "gpu_workers.max_replicas"),
    ("replicas: 3\n", "replicas"),
    ("redis: {appendfsync: no}\n", "redis.appendfsync"),
    ("jobs: {serve: {args: x}}\n", "jobs.serve"),
])
def test_a_bad_spec_is_refused_naming_the_key(tmp_path: Path, text: str, key: str,
                                              capsys: pytest.CaptureFixture[str],
                                              clean_env: None) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_cluster_spec(path)
    assert caught.value.field == key
    assert "\n" not in str(caught.value) and key in str(caught.value)
    assert main(["cluster", "render", "--spec", str(path), "--out", str(tmp_path / "o")]) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _groups(cluster: dict) -> dict[str, dict]:
    return {"head": cluster["headGroupSpec"],
            **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_pods_carry_exactly_the_commands_of_ray_start_commands() -> None:
    spec, config = _example()
    manifests = render_manifests(spec, config)
    for cluster in (manifests["raycluster"]["spec"],
                    manifests["rayservice"]["spec"]["rayClusterConfig"]):
        groups = _groups(cluster)
        commands = ray_start_commands(spec, config)
        assert [c.group for c in commands] == list(groups) == ["head", "cpu", "gpu"]
        for command in commands:
            group = groups[command.group]
            # KubeRay pastes `--key=value` into a shell line: the shell gives back params.
            assert {k: shlex.split(v)[0] for k, v in group["rayStartParams"].items()} == \
                command.params
            container = group["template"]["spec"]["containers"][0]
            plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
            refs = {e["name"]: SecretRef(**e["valueFrom"]["secretKeyRef"])
                    for e in container["env"] if "valueFrom" in e}
            assert plain == command.env and refs == command.secrets
            names = [e["name"] for e in container["env"]]
            assert names.index("STATE_REDIS_PASSWORD") < names.index("MLRAY_STATE_URL")


def test_head_gives_no_cpus_and_offers_the_control_resource() -> None:
    spec, config = _example()
    head, cpu, gpu = ray_start_commands(spec, config)
    assert head.params["num-cpus"] == "0"
    assert json.loads(head.params["resources"]) == {"mlray-control": 100}
    assert "resources" not in cpu.params and "resources" not in gpu.params
    for command in (head, cpu, gpu):
        assert command.params["metrics-export-port"] == "8080"
        assert command.env["RAY_AUTH_MODE"] == "token"
        assert command.secrets["RAY_AUTH_TOKEN"] == SecretRef("mlray-ray-token", "auth_token")
    argv = cpu.argv("10.0.0.1:6379")
    assert argv[:3] == ["ray", "start", "--address=10.0.0.1:6379"] and argv[-1] == "--block"
    assert head.argv()[:3] == ["ray", "start", "--head"]
    assert '--resources={"mlray-control": 100}' in head.argv()
    with pytest.raises(ValueError, match="address"):
        cpu.argv()


def test_pod_environment_yields_the_cluster_mode_platform_config() -> None:
    """What a pod's processes load: Redis with the Secret's password, the bucket."""
    spec, config = _example()
    head = ray_start_commands(spec, config)[0]
    env = head.environ({SecretRef("mlray-ray-token", "auth_token"): "tok",
                        SecretRef("mlray-redis", "password"): "s3cret"})
    assert env["RAY_AUTH_TOKEN"] == "tok"
    loaded = load_config(env=env)
    host = "mlray-redis.mlray.svc.cluster.local:6379"
    assert loaded.state_url == f"redis://:s3cret@{host}/0"
    assert loaded.online_url == f"redis://:s3cret@{host}/1"
    assert loaded.stream_url == f"redis://:s3cret@{host}/2"
    assert (loaded.artifact_uri, loaded.offline_uri) == ("s3://mlray/artifacts",
                                                         "s3://mlray/offline")
    assert loaded.storage_uri == "s3://mlray/ray-train"
    assert loaded.actor_resources == {"mlray-control": 0.01}
    assert (loaded.namespace, loaded.serve_port) == (config.namespace, config.serve_port)
    own = load_config(env={"MLRAY_ACTOR_RESOURCES": '{"control": 1}'})
    assert ray_start_commands(spec, own)[0].env["MLRAY_ACTOR_RESOURCES"] == '{"control": 1.0}'


def test_gpu_group_and_worker_bounds() -> None:
    spec, config = _example()
    groups = _groups(render_manifests(spec, config)["raycluster"]["spec"])
    gpu = groups["gpu"]
    pod = gpu["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and pod["containers"][0]["image"] == "mlray:0.1.0-gpu"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 2)
    assert (groups["cpu"]["minReplicas"], groups["cpu"]["maxReplicas"]) == (1, 4)
    assert "nvidia.com/gpu" not in groups["cpu"]["template"]["spec"]["containers"][0][
        "resources"]["limits"]
    assert len(_groups(render_manifests(ClusterSpec(), config)["raycluster"]["spec"])) == 2


def test_secrets_are_referenced_never_inlined() -> None:
    spec, config = _example()
    manifests = render_manifests(spec, config)
    assert all(m["kind"] != "Secret" for m in manifests.values())
    text = "\n".join(dump_manifest(m) for m in manifests.values())
    for line in text.splitlines():
        assert "password:" not in line.replace("key: password", "")
    cluster = manifests["raycluster"]["spec"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "mlray-ray-token"}
    assert cluster["gcsFaultToleranceOptions"]["redisPassword"] == {
        "valueFrom": {"secretKeyRef": {"name": "mlray-redis", "key": "password"}}}
    redis = manifests["redis-statefulset"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][-1] == "$(STATE_REDIS_PASSWORD)"
    assert redis["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "mlray-redis"


def test_rayservice_embeds_the_ingress_with_the_platform_config() -> None:
    spec, _ = _example()
    config = PlatformConfig(namespace="prod", project="risk", serve_port=8100)
    service = render_manifests(spec, config)["rayservice"]["spec"]
    serve = yaml.safe_load(service["serveConfigV2"])
    assert serve["http_options"]["port"] == 8100
    app = serve["applications"][0]
    assert app["import_path"] == "mlray.serving.ingress:build_app"
    assert app["args"] == {"namespace": "prod", "project": "risk", "auth": "keys"}
    assert service["upgradeStrategy"] == {"type": "NewCluster"}
    assert _groups(service["rayClusterConfig"])["head"]["template"]["spec"]["containers"][0][
        "ports"][3] == {"containerPort": 8100, "name": "serve"}


def test_rayjobs_on_the_raycluster_or_standalone() -> None:
    spec, config = _example()
    train = render_manifests(spec, config)["rayjob-train"]["spec"]
    assert train["entrypoint"] == "python -m jobs.train --config /app/configs/train/fraud.yaml"
    assert train["clusterSelector"] == {"ray.io/cluster": "mlray"}
    assert train["activeDeadlineSeconds"] == 7200 and not train["shutdownAfterJobFinishes"]
    alone = render_manifests(spec.model_copy(update={"jobs_standalone": True}),
                             config)["rayjob-tune"]["spec"]
    assert "clusterSelector" not in alone and alone["rayClusterSpec"]["headGroupSpec"]
    assert alone["shutdownAfterJobFinishes"] is True
    assert (alone["ttlSecondsAfterFinished"], alone["backoffLimit"]) == (600, 0)


def test_redis_runs_append_only_with_the_chosen_fsync(tmp_path: Path) -> None:
    spec, config = _example()
    conf = render_manifests(spec, config)["redis-configmap"]["data"]["redis.conf"]
    assert "appendonly yes" in conf.splitlines() and "appendfsync everysec" in conf.splitlines()
    always = spec.model_copy(update={"redis": spec.redis.model_copy(
        update={"appendfsync": "always"})})
    written = write_manifests(render_manifests(always, config), tmp_path)
    conf = yaml.safe_load((tmp_path / "redis-configmap.yaml").read_text())["data"]["redis.conf"]
    assert "appendfsync always" in conf.splitlines() and len(written) == 10


@pytest.mark.parametrize(("env", "key", "words"), [
    ({"MLRAY_STATE_URL": "sqlite:///state.db"}, "state_url", "one node's disk"),
    ({"MLRAY_ARTIFACT_URI": "/data/artifacts"}, "artifact_uri", "one node's disk"),
    ({"MLRAY_ONLINE_URL": "redis://:hunter2@redis.ext:6379/0"}, "online_url", "password"),
])
def test_node_local_or_inlined_storage_in_the_platform_config_is_refused(
        env: dict[str, str], key: str, words: str) -> None:
    spec, _ = _example()
    with pytest.raises(ConfigError) as caught:
        render_manifests(spec, load_config(env=env))
    assert caught.value.field == key and words in str(caught.value)
    assert "hunter2" not in str(caught.value) and "\n" not in str(caught.value)


def test_an_external_redis_or_bucket_in_the_platform_config_wins() -> None:
    spec, _ = _example()
    external = "redis://:$(STATE_REDIS_PASSWORD)@redis.example.com:6379/4"
    config = load_config(env={"MLRAY_STATE_URL": external,
                              "MLRAY_ARTIFACT_URI": "s3://models-bucket/mlray"})
    env = ray_start_commands(spec, config)[1].env
    assert env["MLRAY_STATE_URL"] == external
    assert env["MLRAY_ARTIFACT_URI"] == "s3://models-bucket/mlray"
    assert env["MLRAY_ONLINE_URL"].endswith("@mlray-redis.mlray.svc.cluster.local:6379/1")


def test_rays_autoscaler_reads_the_groups_as_rendered() -> None:
    """The in-tree autoscaler derives its node types from the RayCluster with Ray's own
    code: the head offers no CPU and the control resource, the groups their bounds."""
    from ray.autoscaler._private.kuberay.autoscaling_config import (
        _derive_autoscaling_config_from_ray_cr,
    )

    spec, config = _example()
    derived = _derive_autoscaling_config_from_ray_cr(
        render_manifests(spec, config)["raycluster"])
    types = {name: (t["resources"], t["min_workers"], t["max_workers"])
             for name, t in derived["available_node_types"].items()}
    head = types.pop("headgroup")
    assert head[0]["CPU"] == 0 and head[0]["mlray-control"] == 100
    assert {k: (r["CPU"], r.get("GPU"), lo, hi) for k, (r, lo, hi) in types.items()} == {
        "cpu": (4, None, 1, 4), "gpu": (8, 1, 0, 2)}
    assert derived["idle_timeout_minutes"] == 1.0


def test_manifests_are_written_without_yaml_anchors() -> None:
    spec, config = _example()
    text = dump_manifest(render_manifests(spec, config)["redis-statefulset"])
    assert "&id" not in text and "*id" not in text


def test_image_ray_and_python_match_the_platforms() -> None:
    """The Dockerfile's base, the spec's rayVersion and the Ray mlray runs on agree."""
    import sys

    import ray

    spec, _ = _example()
    base = next(line.split("=", 1)[1] for line in
                (ROOT / "cluster" / "Dockerfile").read_text().splitlines()
                if line.startswith("ARG BASE="))
    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    assert base == f"rayproject/ray:{spec.ray_version}-{python}"
    assert spec.ray_version == ray.__version__


def test_settings_files_reach_every_pod_through_a_configmap(tmp_path: Path) -> None:
    spec, _ = _example()
    serving, alerts = ROOT / "configs" / "serving.yaml", ROOT / "configs" / "alerts.yaml"
    config = PlatformConfig(serving_config=serving, alerts_config=alerts)
    manifests = render_manifests(spec, config)
    configmap = manifests["platform-configmap"]
    assert configmap["metadata"]["name"] == "mlray-platform"
    assert configmap["data"] == {"serving.yaml": serving.read_text(),
                                 "alerts.yaml": alerts.read_text()}
    for command in ray_start_commands(spec, config):
        assert command.files == {"/etc/mlray/serving.yaml": serving,
                                 "/etc/mlray/alerts.yaml": alerts}
        loaded = load_config(env=command.environ({
            SecretRef("mlray-ray-token", "auth_token"): "t",
            SecretRef("mlray-redis", "password"): "p"}))
        assert loaded.serving_config == Path("/etc/mlray/serving.yaml")
        assert loaded.alerts_config == Path("/etc/mlray/alerts.yaml")
    for group in _groups(manifests["raycluster"]["spec"]).values():
        pod = group["template"]["spec"]
        assert pod["containers"][0]["volumeMounts"][0] == {
            "name": "platform-config", "mountPath": "/etc/mlray", "readOnly": True}
        assert pod["volumes"][0] == {"name": "platform-config",
                                     "configMap": {"name": "mlray-platform"}}
    plain = render_manifests(spec, PlatformConfig())
    assert "platform-configmap" not in plain
    head = plain["raycluster"]["spec"]["headGroupSpec"]["template"]["spec"]
    assert [v["name"] for v in head["volumes"]] == ["api-key"]
    missing = PlatformConfig(serving_config=tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as caught:
        render_manifests(spec, missing)
    assert caught.value.field == "serving_config" and "nope.yaml" in str(caught.value)


def test_a_cluster_runs_with_auth_keys_whatever_the_platform_config_says() -> None:
    spec, config = _example()
    config = config.model_copy(update={"auth": "none"})
    manifests = render_manifests(spec, config)
    serve = yaml.safe_load(manifests["rayservice"]["spec"]["serveConfigV2"])
    ingress = [a for a in serve["applications"]
               if a["import_path"] == "mlray.serving.ingress:build_app"]
    assert serve["http_options"]["host"] == "0.0.0.0" and ingress[0]["args"]["auth"] == "keys"
    for command in ray_start_commands(spec, config):
        assert command.env["MLRAY_AUTH"] == "keys", command.group


def test_jobs_on_the_cluster_act_as_the_mounted_api_key(tmp_path: Path) -> None:
    spec, config = _example()
    manifests = render_manifests(spec, config)
    for group in _groups(manifests["raycluster"]["spec"]).values():
        pod = group["template"]["spec"]
        container = pod["containers"][0]
        assert {"name": "api-key", "mountPath": "/etc/mlray-key",
                "readOnly": True} in container["volumeMounts"]
        assert {"name": "api-key", "secret": {"secretName": "mlray-api-key",
                                              "optional": True}} in pod["volumes"]
        assert {"name": "MLRAY_API_KEY_FILE",
                "value": "/etc/mlray-key/api_key"} in container["env"]
    none = spec.model_copy(update={"secrets": spec.secrets.model_copy(
        update={"api_key": None})})
    for command in ray_start_commands(none, config):
        assert command.key_secret is None and "MLRAY_API_KEY_FILE" not in command.env
    # what mlray.connect reads in such a pod: the file once the Secret exists, not before
    from mlray.auth import api_key_from_env

    key_file = tmp_path / "api_key"
    pod_env = {"MLRAY_API_KEY_FILE": str(key_file)}
    assert api_key_from_env(pod_env) is None
    key_file.write_text("mlr_0123456789ab_secret\n")
    assert api_key_from_env(pod_env) == "mlr_0123456789ab_secret"
    assert api_key_from_env({**pod_env, "MLRAY_API_KEY": "mlr_env"}) == "mlr_env"
