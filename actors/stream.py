"""Stream processor actors: one per project's streaming feature view, named
``stream:<project>:<view>`` (two projects' views of one name are two processors).

A thin shell over :class:`mlray.features.stream.StreamProcessor`: a background thread
reads the view's Redis Stream in the view's consumer group and writes online and
offline. At-least-once with idempotent effects, so a killed actor (restarted forever)
re-reads what it had not acknowledged and counts nothing twice. There is one processor
per view, so it claims every pending entry at once (``claim_idle_ms=0``) before reading
new ones: a restarted processor finishes the burst it was in before moving on, and
its windows see those events in time rather than as late arrivals.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray
import redis

from mlray._private.redact import install_log_redaction
from mlray.composition import open_stores
from mlray.config import PlatformConfig
from mlray.errors import BackendUnavailable
from mlray.features.offline import OfflineStore
from mlray.features.online import open_online_store
from mlray.features.service import FeatureRegistry
from mlray.features.stream import StreamProcessor
from mlray.identity import Caller

__all__ = ["StreamActor", "processor_name", "start_stream_processors"]

log = logging.getLogger("mlray.streams")


def processor_name(project: str, view: str) -> str:
    """The actor name of the stream processor of ``project``'s ``view``."""
    return f"stream:{project}:{view}"


@ray.remote(max_concurrency=2)
class StreamActor:
    """Consumes one streaming view until killed."""

    def __init__(self, config: PlatformConfig, project: str, view: str,
                 claim_idle_ms: int = 0) -> None:
        install_log_redaction()
        if not config.stream_url:
            raise BackendUnavailable("stream_url is not set; streams need a Redis")
        store, _ = open_stores(config)
        repo = FeatureRegistry(store).repo(Caller.local_admin("mlray-streams"), project)
        assert config.online_url is not None and config.offline_uri is not None
        self.processor = StreamProcessor(
            repo, view, redis.Redis.from_url(config.stream_url),
            open_online_store(config.online_url, project=project,
                              redis_prefix=config.redis_prefix),
            OfflineStore(config.offline_uri, repo, project=project), claim_idle_ms=claim_idle_ms,
            consumer=f"{view}:processor", prefix=config.redis_prefix)
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name=f"stream-{view}", daemon=True).start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.processor.run_once(block_ms=500)
            except Exception:  # Redis away or a store failing: nothing acked, try again
                log.exception("stream processing failed; retrying")
                self._stop.wait(1.0)

    def stats(self) -> dict[str, Any]:
        """Counters of what this processor handled, and the group's pending entries."""
        return {**vars(self.processor.stats), "pending": self.processor.pending()}

    def ping(self) -> str:
        """Liveness probe."""
        return "ok"


def start_stream_processors(config: PlatformConfig, project: str, views: list[str],
                            timeout_s: float = 60.0) -> dict[str, Any]:
    """Create (or find) the processor of each streaming view and wait until it answers."""
    handles = {view: StreamActor.options(
        name=processor_name(project, view), namespace=config.namespace, lifetime="detached",
        get_if_exists=True, max_restarts=-1, max_task_retries=0,
        num_cpus=config.actor_num_cpus, resources=dict(config.actor_resources),
    ).remote(config, project, view) for view in views}
    ray.get([h.ping.remote() for h in handles.values()], timeout=timeout_s)
    return handles
