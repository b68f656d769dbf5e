"""Small model versions answered inside the ingress replica: no hop to a model app.

A model whose serving settings say ``colocate: true`` still deploys its app
``<project>--<model>--v<N>``: health checks, smoke tests, rollouts and retuning stay there. Each
ingress replica also loads the version itself (with the app's effective settings), off
the event loop, the first time it routes to it; from then on its requests are batched
and predicted in the replica (:class:`~mlray.serving.batched.BatchedVersion`). Until the
copy is loaded, when loading failed (retried later), and when the copy fails a request
(it is dropped and loaded again later), requests go to the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from mlray.registry.types import ModelVersion
from mlray.serving.batched import BatchedVersion

__all__ = ["LocalVersions"]

log = logging.getLogger("mlray.colocated")

Key = tuple[str, int]


class LocalVersions:
    """The colocated versions of one ingress replica, loaded on first use."""

    def __init__(self, load: Callable[[ModelVersion], Awaitable[BatchedVersion]],
                 retry_after_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load, self._retry_after_s, self._clock = load, retry_after_s, clock
        self._loaded: dict[Key, BatchedVersion] = {}
        self._loading: dict[Key, asyncio.Task[None]] = {}
        self._failed_at: dict[Key, float] = {}

    def get(self, version: ModelVersion) -> BatchedVersion | None:
        """The loaded copy of ``version``; None (and a load started) while there is none."""
        key = (version.model, version.version)
        found = self._loaded.get(key)
        if found is not None:
            return found
        failed = self._failed_at.get(key)
        if key not in self._loading and (failed is None
                                         or self._clock() - failed >= self._retry_after_s):
            task = asyncio.get_running_loop().create_task(self._load_one(key, version))
            self._loading[key] = task
        return None

    def loading(self) -> frozenset[Key]:
        """The versions being loaded now."""
        return frozenset(self._loading)

    async def _load_one(self, key: Key, version: ModelVersion) -> None:
        try:
            self._loaded[key] = await self._load(version)
            self._failed_at.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception:  # the app keeps answering; try again later
            log.warning("loading %s v%d in the ingress failed; its app answers",
                        *key, exc_info=True)
            self._failed_at[key] = self._clock()
        finally:
            self._loading.pop(key, None)

    def drop(self, model: str, version: int) -> None:
        """Forget a copy that failed; it is loaded again after ``retry_after_s``."""
        self._loaded.pop((model, version), None)
        self._failed_at[(model, version)] = self._clock()

    def loaded(self) -> dict[Key, BatchedVersion]:
        """Every copy that answers here now."""
        return dict(self._loaded)

    def keep_only(self, served: Iterable[Key]) -> None:
        """Forget copies of versions no longer served (their memory goes with them) and
        stop loading them."""
        keep = set(served)
        for key in [k for k in self._loaded if k not in keep]:
            del self._loaded[key]
        for key in [k for k in self._failed_at if k not in keep]:
            del self._failed_at[key]
        for key in [k for k in self._loading if k not in keep]:
            self._loading.pop(key).cancel()
