"""Start serving on a Ray cluster: Serve's HTTP proxy and the ``mlray`` ingress app."""

from __future__ import annotations

import ipaddress

from ray import serve

from mlray.config import PlatformConfig
from mlray.errors import ConfigError
from mlray.serving.deployer import running_serve_port
from mlray.serving.ingress import ingress_app
from mlray.serving.model_names import INGRESS_APP
from mlray.serving.settings import load_serving_config

__all__ = ["is_loopback", "start_serving", "stop_serving"]


def is_loopback(host: str) -> bool:
    """True when ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def start_serving(config: PlatformConfig, host: str = "127.0.0.1") -> str:
    """Start every control-plane actor (idempotent), Serve on ``config.serve_port`` (if it
    is not running), and deploy the ingress. Redeploying is idempotent. Returns the
    ingress's base URL.

    Raises:
        ConfigError: ``auth`` is ``none`` and ``host`` is not loopback (anyone who can
            reach the port would act as the admin); Serve already runs on another port
            (Serve cannot move it); or nothing runs yet and another process holds
            ``serve_port``.
    """
    from mlray._private.ray_head import port_free

    if config.auth == "none" and not is_loopback(host):
        raise ConfigError(f"auth: none serves HTTP only on loopback, not {host}; set auth: keys "
                          "(MLRAY_AUTH=keys) to bind it", field="auth")
    running = running_serve_port()
    if running is not None and running != config.serve_port:
        raise ConfigError(
            f"Serve already listens on port {running} in this cluster, not serve_port "
            f"{config.serve_port}; use {running}, or `mlray down` and `mlray up` to move it",
            field="serve_port")
    if running is None and not port_free(config.serve_port):
        raise ConfigError(f"serve_port {config.serve_port} is in use by another process "
                          "(set MLRAY_SERVE_PORT to a free port)", field="serve_port")
    serving = load_serving_config(config.serving_config)
    # The ingress reads the registry and syncs with breakers, features, deployments and the
    # monitor; alerts evaluate what the monitor gathers.
    from actors import start_actors

    start_actors(config)
    cap = serving.ingress.proxy_timeout_s
    serve.start(http_options={"host": host, "port": config.serve_port,
                              "request_timeout_s": cap or None})
    serve.run(ingress_app(config, serving), name=INGRESS_APP, route_prefix="/")
    return f"http://{host}:{config.serve_port}"


def stop_serving() -> None:
    """Remove every Serve application and stop Serve's proxies and controller."""
    serve.shutdown()
