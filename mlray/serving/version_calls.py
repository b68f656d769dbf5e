"""Calls from an ingress replica to the model versions it routes to: the colocated copy
or the model app, within the request's deadline, with the version's breaker told the
outcome; and shadow calls, whose outcome never reaches the caller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
from ray.serve.exceptions import BackPressureError

from mlray.errors import DeadlineExceeded, MlrayError, PredictionFailed
from mlray.serving.ingress_sync import IngressSync
from mlray.serving.loaded_model import Columns
from mlray.serving.overload import Deadline, InFlight, Overloaded, blame_timeout, slots
from mlray.serving.router import Router
from mlray.serving.settings import ModelServing

__all__ = ["VersionCalls"]

log = logging.getLogger("mlray.ingress")


class VersionCalls:
    """One replica's calls to model versions (its in-flight counts and shadow tasks)."""

    def __init__(self, router: Router, sync: IngressSync, retry_after_s: float) -> None:
        self._router, self._sync, self._retry_after_s = router, sync, retry_after_s
        self._in_flight = InFlight()
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    async def answer(self, model: str, version: int, columns: Columns,
                     settings: ModelServing) -> np.ndarray:
        """The prediction: from the colocated copy when one is loaded here, else (and when
        the copy fails: it is dropped and reloaded later) from the model app."""
        if settings.colocate:
            local = self._sync.local.get(self._router.version(model, version))
            if local is not None:
                try:
                    return await local.predict(columns)
                except Exception:
                    log.warning("the colocated copy of %s v%d failed; asking its app",
                                model, version, exc_info=True)
                    self._sync.local.drop(model, version)
        return await self._sync.handle(model, version).predict.remote(columns)

    async def call(self, model: str, version: int, columns: Columns, settings: ModelServing,
                   deadline: Deadline | None = None) -> np.ndarray:
        """The version's answer within what is left of the request's deadline.

        Its breaker hears of errors, and of timeouts only when the version had a fair
        chance (:func:`~mlray.serving.overload.blame_timeout`); a request shed because the
        version's queue is full (503) or out of time before the call is no verdict on it."""
        start, timeout_s = time.perf_counter(), settings.timeout_s
        budget = timeout_s if deadline is None else deadline.remaining(timeout_s)
        if budget <= 0:
            self._router.breaker(model, version).release()
            raise DeadlineExceeded(f"no answer within {timeout_s:g} s: the time went before "
                                   f"{model} v{version} was asked (the ingress is busy)")
        key = (model, version)
        ahead = self._in_flight.enter(key)
        try:
            result = await asyncio.wait_for(self.answer(model, version, columns, settings),
                                            budget)
        except TimeoutError:
            if blame_timeout(budget_s=budget, timeout_s=timeout_s, ahead=ahead,
                             slots=slots(settings), waited_s=time.perf_counter() - start):
                self._router.record(model, version, False, (time.perf_counter() - start) * 1e3)
            else:
                self._router.breaker(model, version).release()
            raise DeadlineExceeded(f"{model} v{version} gave no answer within {timeout_s:g} s"
                                   ) from None
        except BackPressureError:
            self._router.breaker(model, version).release()
            raise Overloaded(f"{model} v{version} is at capacity (its queue is full); retry "
                             "shortly", retry_after=self._retry_after_s) from None
        except asyncio.CancelledError:  # the client went away: no verdict on the model
            self._router.breaker(model, version).release()
            raise
        except Exception as exc:
            self._router.record(model, version, False, (time.perf_counter() - start) * 1e3)
            raise PredictionFailed(f"{model} v{version} failed to predict: "
                                   f"{type(exc).__name__}") from exc
        finally:
            self._in_flight.leave(key)
        self._router.record(model, version, True, (time.perf_counter() - start) * 1e3)
        return result

    def shadow(self, model: str, version: int, columns: Columns, settings: ModelServing
               ) -> None:
        """Call ``version`` in the background (a shadow): counted in its breaker and
        tallies, never the caller's problem."""
        async def run() -> None:
            with contextlib.suppress(MlrayError):
                await self.call(model, version, columns, settings)

        task = asyncio.get_running_loop().create_task(run())
        self._shadow_tasks.add(task)
        task.add_done_callback(self._shadow_tasks.discard)
