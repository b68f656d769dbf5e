"""HTTP load for the serving bench: ``wrk`` with a Lua body when installed, else aiohttp.

Closed loop (``closed_loop``): ``concurrency`` connections, each sending the next request
as soon as the last one answered, for ``seconds``. Open loop (``open_loop``): requests
sent on a fixed schedule whatever the answers, latency counted from the scheduled send
time (so a stall is not hidden by the generator waiting on it); always aiohttp, as
Debian's wrk has no fixed-rate mode. Overload (``overload``): a closed loop of many
clients with aiohttp, counting every answer's status and latency (errors included) and
whether 503s carry ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

__all__ = ["LoadResult", "OverloadResult", "closed_loop", "generator_name", "open_loop",
           "overload"]

_HEADERS = {"Content-Type": "application/json"}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


@dataclass(frozen=True)
class LoadResult:
    """What one load cell measured."""

    requests_per_s: float  # answered with 200 (errors excluded)
    p50_ms: float
    p99_ms: float
    errors: int
    first_error: str = ""  # e.g. "503 {...}": the first failure's status and body


def generator_name() -> str:
    """The closed-loop generator this machine gives: ``wrk`` or ``aiohttp``."""
    return "wrk" if shutil.which("wrk") else "aiohttp"


def closed_loop(url: str, body: bytes, concurrency: int, seconds: float,
                headers: dict[str, str] | None = None) -> LoadResult:
    """Closed-loop POSTs of ``body`` to ``url`` at ``concurrency`` for ``seconds``, with
    ``headers`` besides the JSON content type (an ``Authorization``, say)."""
    if generator_name() == "wrk":
        return _wrk(url, body, concurrency, seconds, headers or {})
    return asyncio.run(_aiohttp_closed(url, body, concurrency, seconds, headers or {}))


def open_loop(url: str, body: bytes, rate: float, seconds: float) -> LoadResult:
    """POSTs of ``body`` at a fixed ``rate`` per second for ``seconds`` (aiohttp)."""
    return asyncio.run(_aiohttp_open(url, body, rate, seconds))


# -- wrk --------------------------------------------------------------------------------------

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
EXTRA
local f = io.open("BODY", "rb")
wrk.body = f:read("*a")
f:close()
local shown = false
response = function(status, headers, body)
  if status ~= 200 and not shown then
    shown = true
    io.write("FIRST-ERROR " .. status .. " " .. string.sub(body, 1, 200) .. "\\n")
  end
end
"""


def _wrk(url: str, body: bytes, concurrency: int, seconds: float,
         headers: dict[str, str]) -> LoadResult:
    workdir = Path(tempfile.mkdtemp(prefix="mlray-bench-wrk-"))
    (workdir / "body.json").write_bytes(body)
    script = workdir / "post.lua"
    extra = "\n".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}"
                      for k, v in headers.items())
    script.write_text(_LUA.replace("BODY", str(workdir / "body.json")).replace("EXTRA", extra))
    threads = min(concurrency, 2)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(seconds))}s",
               "--timeout", "10s", "--latency", "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    shutil.rmtree(workdir, ignore_errors=True)
    return _parse_wrk(out)


def _parse_wrk(out: str) -> LoadResult:
    def percentile(p: int) -> float:
        found = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.MULTILINE)
        return float(found.group(1)) * _UNITS[found.group(2)] if found else float("nan")

    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                        out)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    first = re.search(r"^FIRST-ERROR (.*)$", out, re.MULTILINE)
    rate = 0.0
    if done:
        elapsed_s = float(done.group(2)) * _UNITS[done.group(3)] / 1e3
        rate = max(0, int(done.group(1)) - errors) / elapsed_s
    return LoadResult(rate, percentile(50), percentile(99), errors,
                      first.group(1) if first else "")


# -- aiohttp ----------------------------------------------------------------------------------

async def _post(session: aiohttp.ClientSession, url: str, body: bytes,
                headers: dict[str, str] | None = None) -> str:
    """POST ``body``; "" when answered with 200, else the status and body (or the error)."""
    try:
        async with session.post(url, data=body, headers={**_HEADERS, **(headers or {})}
                                ) as reply:
            text = await reply.text()
            return "" if reply.status == 200 else f"{reply.status} {text[:200]}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


class _Tally:
    """Latencies of answered requests and the failures seen."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error = ""

    def add(self, failure: str, latency_s: float) -> None:
        if not failure:
            self.latencies.append(latency_s)
            return
        self.errors += 1
        self.first_error = self.first_error or failure

    def result(self, seconds: float) -> LoadResult:
        if not self.latencies:
            return LoadResult(0.0, float("nan"), float("nan"), self.errors, self.first_error)
        ms = np.asarray(self.latencies) * 1e3
        return LoadResult(len(ms) / seconds, float(np.percentile(ms, 50)),
                          float(np.percentile(ms, 99)), self.errors, self.first_error)


async def _aiohttp_closed(url: str, body: bytes, concurrency: int, seconds: float,
                          headers: dict[str, str]) -> LoadResult:
    tally = _Tally()

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        while (start := time.perf_counter()) < deadline:
            failure = await _post(session, url, body, headers)
            tally.add(failure, time.perf_counter() - start)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session, began + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return tally.result(elapsed)


async def _aiohttp_open(url: str, body: bytes, rate: float, seconds: float) -> LoadResult:
    tally = _Tally()

    async def one(session: aiohttp.ClientSession, due: float) -> None:
        failure = await _post(session, url, body)
        tally.add(failure, time.perf_counter() - due)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        began = time.perf_counter()
        tasks = []
        for i in range(int(rate * seconds)):
            due = began + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(session, due)))
        await asyncio.gather(*tasks)
    return tally.result(seconds)


# -- overload ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OverloadResult:
    """Every answer of an overload cell: statuses, latencies (all answers), Retry-After."""

    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503 overloaded", ...
    latencies_ms: list[float] = field(default_factory=list)
    retry_after_503: int = 0  # 503s that carried a Retry-After header

    @property
    def answered_per_s(self) -> float:
        return self.statuses["200"] / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms, default=float("nan"))


def overload(url: str, body: bytes, concurrency: int, seconds: float,
             timeout_s: float = 300.0) -> OverloadResult:
    """``concurrency`` clients POST ``body`` back to back for ``seconds`` (the last
    answers are waited for, up to ``timeout_s``); every answer is counted."""
    return asyncio.run(_aiohttp_overload(url, body, concurrency, seconds, timeout_s))


async def _aiohttp_overload(url: str, body: bytes, concurrency: int, seconds: float,
                            timeout_s: float) -> OverloadResult:
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    retry_after = [0]

    async def worker(session: aiohttp.ClientSession, deadline: float) -> None:
        while (start := time.perf_counter()) < deadline:
            pause = 0.05
            try:
                async with session.post(url, data=body, headers=_HEADERS) as reply:
                    content = await reply.read()
                    status = str(reply.status)
                    if reply.status != 200:  # "503 overloaded"; "503" from Serve's proxy
                        with contextlib.suppress(ValueError, KeyError, TypeError):
                            status += f" {json.loads(content)['code']}"
                    if reply.status == 503 and "Retry-After" in reply.headers:
                        retry_after[0] += 1
                        pause = float(reply.headers["Retry-After"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                status = type(exc).__name__
            statuses[status] += 1
            latencies.append((time.perf_counter() - start) * 1e3)
            if status != "200":  # as a client would before retrying: Retry-After, or 50 ms
                await asyncio.sleep(pause)

    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        await asyncio.gather(*(worker(session, began + seconds) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return OverloadResult(elapsed, statuses, latencies, retry_after[0])
