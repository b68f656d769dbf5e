"""Start serving on a Ray cluster: Serve's HTTP proxy and the ``mlray`` ingress app."""

from __future__ import annotations

from ray import serve

from mlray.config import PlatformConfig
from mlray.serving.ingress import ingress_app
from mlray.serving.model_names import INGRESS_APP
from mlray.serving.settings import load_serving_config

__all__ = ["start_serving", "stop_serving"]


def start_serving(config: PlatformConfig, host: str = "127.0.0.1") -> str:
    """Start Serve on ``config.serve_port`` (if it is not running) and deploy the ingress.

    The control-plane actors must be up (the ingress reads the ``registry`` and syncs
    with ``breakers``). Redeploying is idempotent. Returns the ingress's base URL.
    """
    serve.start(http_options={"host": host, "port": config.serve_port})
    serve.run(ingress_app(config, load_serving_config(config.serving_config)),
              name=INGRESS_APP, route_prefix="/")
    return f"http://{host}:{config.serve_port}"


def stop_serving() -> None:
    """Remove every Serve application and stop Serve's proxies and controller."""
    serve.shutdown()
