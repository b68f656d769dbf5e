"""The loopback simulation changes only what one host forces in the pods' commands."""

from __future__ import annotations

from pathlib import Path

from mlray._private.ray_head import INTERNAL_PORTS
from mlray.cluster.commands import ray_start_commands, redis_host
from mlray.cluster.sim import KUBERAY_REDIS_PASSWORD, Ports, one_host_argv, one_host_env
from mlray.cluster.spec import ClusterSpec
from mlray.config import PlatformConfig

SPEC, CONFIG = ClusterSpec(), PlatformConfig()
PORTS = Ports(gcs=41001, dashboard=41002, serve=41003, redis=41004, s3=41005,
              nodes=[{flag: 42000 + 10 * n + i for i, flag in enumerate(INTERNAL_PORTS)}
                     for n in range(3)])
SECRETS = {"auth_token": "tok", "password": "pw"}
FORCED_ENV = {"MLRAY_HOME", "HOME", "RAY_TMPDIR", "RAY_agent_register_timeout_ms",
              "MLRAY_SERVE_PORT", "RAY_REDIS_ADDRESS", KUBERAY_REDIS_PASSWORD,
              "RAY_external_storage_namespace", "PATH", "MLRAY_API_KEY_FILE"}


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.lstrip("-").split("=", 1) for arg in argv[2:] if "=" in arg)


def test_argv_keeps_every_rendered_param_but_ports_and_block() -> None:
    head, cpu, *_ = ray_start_commands(SPEC, CONFIG)
    for node, command in ((0, head), (1, cpu)):
        argv = one_host_argv(command, PORTS, node, "/venv/bin/ray")
        assert argv[0] == "/venv/bin/ray" and "--block" not in argv
        flags = _flags(argv)
        for key, value in command.params.items():
            if key not in INTERNAL_PORTS:
                assert flags[key] == value, key
        assert {flags[f] for f in INTERNAL_PORTS} == {str(p) for p in PORTS.nodes[node].values()}
    head_flags = _flags(one_host_argv(head, PORTS, 0, "ray"))
    assert head_flags["port"] == "41001" and head_flags["dashboard-port"] == "41002"
    assert head_flags["num-cpus"] == "0" and SPEC.control_resource in head_flags["resources"]
    assert _flags(one_host_argv(cpu, PORTS, 1, "ray"))["address"] == "127.0.0.1:41001"


def test_env_maps_the_redis_service_to_loopback_and_keeps_the_rest(tmp_path: Path) -> None:
    head, cpu, *_ = ray_start_commands(SPEC, CONFIG)
    for command in (head, cpu):
        pod = command.environ({ref: SECRETS[ref.key] for ref in command.secrets.values()})
        env = one_host_env(command, SPEC, PORTS, SECRETS, {"AWS_ENDPOINT_URL": "x"},
                           tmp_path / "n")
        assert env["RAY_AUTH_TOKEN"] == "tok" and env["AWS_ENDPOINT_URL"] == "x"
        assert env["MLRAY_STATE_URL"] == "redis://:pw@127.0.0.1:41004/0"
        for name, value in pod.items():
            if name not in FORCED_ENV:
                assert env[name] == value.replace(f"{redis_host(SPEC)}:6379",
                                                  "127.0.0.1:41004"), name
        assert not any(redis_host(SPEC) in value for value in env.values())
        assert ("RAY_REDIS_ADDRESS" in env) == command.is_head
        # the API key Secret's volume lies in the node's own folder
        assert env["MLRAY_API_KEY_FILE"] == str(tmp_path / "n" / "etc/mlray-key/api_key")
