"""Which configured stores live on one node's disk, and the refusal to run a multi-node
cluster on them.

On a Ray cluster of several nodes the control-plane actors, model replicas and training
workers land on different machines: a SQLite file or a local directory is then a different
store on each. A loopback host (``redis://127.0.0.1``, an ``endpoint_override`` of
``localhost``) is one too once the nodes sit on more than one host.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs, urlparse

from mlray._private.redact import redact
from mlray.config import PlatformConfig
from mlray.errors import ConfigError

__all__ = ["STORE_KEYS", "check_shared_storage", "node_local_stores"]

#: Config keys naming a store every node must reach, in the order they are checked.
STORE_KEYS = ("state_url", "online_url", "stream_url", "artifact_uri", "offline_uri",
              "storage_uri")

_LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def _host_of(value: str) -> str | None:
    parsed = urlparse(value)
    override = parse_qs(parsed.query).get("endpoint_override")
    if override:
        return urlparse(f"//{override[0]}").hostname
    return parsed.hostname


def _why_local(value: str, hosts: int) -> str | None:
    """Why ``value`` is node-local on a cluster spanning ``hosts`` machines, or None."""
    scheme = urlparse(value).scheme if "://" in value else ""
    if scheme in ("", "file", "local"):
        return "a path on one node's disk"
    if scheme == "sqlite":
        return "a SQLite file on one node's disk"
    host = _host_of(value)
    if hosts > 1 and host is not None and (host in _LOOPBACK or host.startswith("127.")):
        return f"a loopback address ({host}), a different server on each host"
    return None


def node_local_stores(config: PlatformConfig, hosts: int = 1) -> dict[str, str]:
    """Each store key whose value only one node can reach, with why, in ``STORE_KEYS`` order.

    Args:
        hosts: distinct machines the cluster's nodes run on (loopback addresses count as
            node-local only when there are several).
    """
    found = {}
    for key in STORE_KEYS:
        value = getattr(config, key)
        if value:
            why = _why_local(str(value), hosts)
            if why:
                found[key] = why
    return found


def check_shared_storage(config: PlatformConfig, node_addresses: Sequence[str]) -> None:
    """Refuse node-local stores when the cluster has more than one alive node.

    Args:
        node_addresses: the IP address of each alive node (one entry per node).

    Raises:
        ConfigError: naming the first node-local key, unless ``allow_local_storage``.
    """
    nodes = len(node_addresses)
    if nodes <= 1 or config.allow_local_storage:
        return
    local = node_local_stores(config, hosts=len(set(node_addresses)))
    if local:
        key, why = next(iter(local.items()))
        others = f" (also: {', '.join(list(local)[1:])})" if len(local) > 1 else ""
        raise ConfigError(
            f"{key}: {redact(str(getattr(config, key)))} is {why}, but the Ray cluster has "
            f"{nodes} alive nodes; use shared storage (redis://, s3://) or set "
            f"allow_local_storage: true{others}", field=key)
