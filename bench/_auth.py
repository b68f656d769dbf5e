"""What HTTP authentication costs (issue 13), for ``bench/serving.py --auth``.

Beside the bench's ``mlray`` ingress (``auth: none``, at ``/``) two more ingress apps run
over the same actors and model apps: ``auth: keys`` with the default key cache (``/keys``)
and ``auth: keys`` whose cache expires at once (``/keysmiss``: every request re-reads its
key's record, the cache-miss path end to end). Single-row predictions at concurrency 1 and
32 go to the three in turn, ``rounds`` times (means), with a real ``predict`` key. Then the
key check itself, in this process, over the bench's state store (SQLite) and a Redis one
(``REDIS_URL`` or 127.0.0.1:6379, when it answers): a cache hit, and a cache miss (the
record re-read, not the slow hash), bare and through the ingress's
:class:`~mlray.serving.access.Access` (its thread hop included).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from ray import serve
from rich.table import Table

from mlray.auth import KeyBook
from mlray.auth.authenticator import store_authenticator
from mlray.config import PlatformConfig
from mlray.errors import MlrayError
from mlray.identity import Caller, Role
from mlray.serving.access import Access
from mlray.serving.ingress import ingress_app
from mlray.serving.settings import load_serving_config
from mlray.storage import StateStore, open_state_store
from mlray.storage.redis import RedisStateStore

__all__ = ["AuthFigures", "auth_tables", "deploy_keyed", "issue_key", "key_check_ms",
           "key_checks"]

#: The ingress apps measured: target → (route prefix, key cache TTL; None: auth none).
KEYED = {"keys": ("/keys", None), "keys, cache miss": ("/keysmiss", 1e-6)}
CONCURRENCY = (1, 32)
MISS = "cache miss (record re-read)"


def deploy_keyed(config: PlatformConfig) -> None:
    """Run the two ``auth: keys`` ingress apps beside the bench's own."""
    serving = load_serving_config(config.serving_config)
    keyed = config.model_copy(update={"auth": "keys"})
    for target, (prefix, ttl_s) in KEYED.items():
        ingress = serving.ingress if ttl_s is None else serving.ingress.model_copy(
            update={"auth_cache_ttl_s": ttl_s})
        serve.run(ingress_app(keyed, serving.model_copy(update={"ingress": ingress})),
                  name=f"mlray-{target.replace(', ', '-').replace(' ', '-')}",
                  route_prefix=prefix)


def issue_key(config: PlatformConfig) -> str:
    """A real ``predict`` key of the bench's project (scrypt-hashed in its store)."""
    with open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix) as store:
        issued = KeyBook(store).create_key(Caller.local_admin("bench"), config.project,
                                           "bench-client", {config.project: "predict"})
    return issued.key.get_secret_value()


def _percentiles(samples_s: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples_s) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def key_checks(store: StateStore, project: str, key: str, n: int = 5000
               ) -> dict[str, tuple[float, float]]:
    """(p50, p99) in ms of a key check over ``store``: a cache hit, a cache miss (the
    record re-read, no hash), and a miss through :class:`Access` (its thread hop)."""
    hit = store_authenticator(store, "keys", "bench", ttl_s=3600)
    miss = store_authenticator(store, "keys", "bench", ttl_s=1e-9)
    hit.caller(key), miss.caller(key)  # the slow hash, once per authenticator

    def timed(check: Callable[[], object]) -> list[float]:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            check()
            out.append(time.perf_counter() - start)
        return out

    access = Access(project, miss)
    header = f"Bearer {key}"

    async def through_access() -> list[float]:
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await access.grant(header, "127.0.0.1", "POST /v1/predict/batch", Role.predict)
            out.append(time.perf_counter() - start)
        return out

    block = bytes(64 * 1024)  # about as long as a miss: its p99 is the machine's own tail
    return {"reference: sha256 of 64 KiB (no I/O)": _percentiles(
                timed(lambda: hashlib.sha256(block).digest())),
            "cache hit (on the event loop)": _percentiles(timed(lambda: hit.cached(key))),
            MISS: _percentiles(timed(lambda: miss.caller(key))),
            "cache miss via Access (thread hop)": _percentiles(asyncio.run(through_access()))}


def key_check_ms(config: PlatformConfig, key: str, redis_url: str | None
                 ) -> dict[str, dict[str, tuple[float, float]]]:
    """:func:`key_checks` over the bench's state store (``key`` lives there) and, when
    ``redis_url`` answers, over a Redis state store under a prefix of its own (a key is
    issued there, and the prefix dropped after)."""
    scheme = config.resolved_state_url.split(":", 1)[0]
    with open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix) as store:
        figures = {scheme: key_checks(store, config.project, key)}
    if redis_url:
        prefix = f"benchauth{uuid.uuid4().hex[:8]}"
        try:
            store = open_state_store(redis_url, redis_prefix=prefix)
        except MlrayError as exc:
            print(f"no Redis key-check figures: {exc}")
            return figures
        try:
            issued = KeyBook(store).create_key(Caller.local_admin("bench"), config.project,
                                               "bench-client", {config.project: "predict"})
            figures["redis"] = key_checks(store, config.project,
                                          issued.key.get_secret_value())
        finally:
            RedisStateStore(redis_url, prefix=prefix).drop_all()
            store.close()
    return figures


@dataclass
class AuthFigures:
    """Requests/s and p99 per (target, concurrency), means over rounds."""

    rates: dict[tuple[str, int], list[float]]
    p99s: dict[tuple[str, int], list[float]]

    def add(self, target: str, concurrency: int, rate: float, p99_ms: float) -> None:
        self.rates.setdefault((target, concurrency), []).append(rate)
        self.p99s.setdefault((target, concurrency), []).append(p99_ms)

    def rate(self, target: str, concurrency: int) -> float:
        return float(np.mean(self.rates[target, concurrency]))

    def p99(self, target: str, concurrency: int) -> float:
        return float(np.mean(self.p99s[target, concurrency]))


def auth_tables(figures: AuthFigures, checks: dict[str, dict[str, tuple[float, float]]]
                ) -> list[Table]:
    """The side-by-side table (ratios over auth none), the key checks per state store, and
    the goals of issue 13."""
    side = Table(title="HTTP auth: 1-row predictions, auth: keys vs auth: none (same run)")
    for col in ("target", "concurrency", "req/s", "p99 ms", "req/s / none", "p99 / none"):
        side.add_column(col, justify="left" if col == "target" else "right")
    for concurrency in CONCURRENCY:
        base_rate, base_p99 = figures.rate("none", concurrency), figures.p99("none", concurrency)
        for target in ("none", *KEYED):
            rate, p99 = figures.rate(target, concurrency), figures.p99(target, concurrency)
            side.add_row(target, str(concurrency), f"{rate:,.0f}", f"{p99:.1f}",
                         f"{rate / base_rate:.3f}", f"{p99 / base_p99:.3f}")
    checks_table = Table(title="key check, in-process")
    for col in ("state store", "check", "p50 ms", "p99 ms"):
        checks_table.add_column(col, justify="right" if col.endswith("ms") else "left")
    for store, found in checks.items():
        for name, (p50, p99) in found.items():
            checks_table.add_row(store, name, f"{p50:.3f}", f"{p99:.3f}")
    goals = Table(title="goals (issue 13)")
    for col in ("goal", "measured", ""):
        goals.add_column(col)

    def check(goal: str, measured: str, ok: bool) -> None:
        goals.add_row(goal, measured, "[green]PASS[/]" if ok else "[red]FAIL[/]")

    for concurrency in CONCURRENCY:
        ratio = figures.rate("keys", concurrency) / figures.rate("none", concurrency)
        check(f"keys within 5% of none, c={concurrency}", f"{ratio:.3f}x req/s",
              ratio >= 0.95)
    for store, found in checks.items():
        p99 = found[MISS][1]
        check(f"key check on a cache miss ({store}): p99 < 5 ms", f"{p99:.3f} ms", p99 < 5)
    return [side, checks_table, goals]
