"""The Ray head that ``mlray up`` starts and ``mlray down`` stops.

- Every port is settled before anything starts: the ones users reach the platform by
  (``ray_head_port``, ``serve_port``) must be free or ``up`` refuses; the dashboard takes
  ``ray_dashboard_port`` or, when that is taken, a free one; Ray's internal ports (dashboard
  agent, metrics export, client server, runtime-env agent, node and object managers) are
  always picked free and passed explicitly, so another Ray on the host cannot hold them.
- ``ray start`` runs in a new process session; every process of the head (and the workers
  its raylet forks) keeps that session id. The record under ``MLRAY_HOME`` keeps it, and
  ``down`` ends exactly the processes of that session: never another Ray on the host.

Linux only (reads ``/proc``), like the rest of Ray's process handling.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel

from mlray.config import PlatformConfig
from mlray.errors import BackendUnavailable, ConfigError

__all__ = ["HeadRecord", "PortPlan", "check_stores", "ensure_auth_token", "load_record",
           "plan_ports", "port_free", "session_processes", "start_head", "stop_head",
           "stop_session"]

RECORD_NAME = "ray-head.json"

#: Ray's internal ports `up` always picks itself (flag of `ray start` -> what it is).
INTERNAL_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                  "metrics-export-port", "ray-client-server-port", "runtime-env-agent-port",
                  "node-manager-port", "object-manager-port")


class PortPlan(BaseModel):
    """The ports a head will use, all checked free before it starts."""

    head: int
    dashboard: int
    serve: int
    internal: dict[str, int]
    notes: list[str] = []


class HeadRecord(BaseModel):
    """What ``up`` started: enough for ``down`` to stop exactly it."""

    gcs_address: str
    dashboard_url: str
    sid: int
    session_name: str | None = None
    ports: PortPlan
    started_at: float

    @property
    def address(self) -> str:
        """The GCS address clients join."""
        return self.gcs_address


def port_free(port: int) -> bool:
    """Whether nothing listens on (or holds) TCP ``port`` on any local address."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def _free_ports(count: int, avoid: set[int]) -> list[int]:
    found: list[int] = []
    socks = []
    try:
        while len(found) < count:
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("0.0.0.0", 0))
            port = sock.getsockname()[1]
            if port not in avoid:
                found.append(port)
    finally:
        for sock in socks:
            sock.close()
    return found


def plan_ports(config: PlatformConfig, serve: bool = True) -> PortPlan:
    """The head's ports, or a one-line refusal naming the key that holds a taken port.

    Raises:
        ConfigError: ``ray_head_port`` (or ``serve_port`` when serving) is in use.
    """
    taken = [(key, port) for key, port in (("ray_head_port", config.ray_head_port),
                                           ("serve_port", config.serve_port if serve else 0))
             if port and not port_free(port)]
    if taken:
        key, port = taken[0]
        raise ConfigError(f"{key} {port} is in use by another process; nothing was started "
                          f"(free it, or set MLRAY_{key.upper()} to a free port)", field=key)
    notes = []
    dashboard = config.ray_dashboard_port
    wanted = {config.ray_head_port, config.serve_port}
    if dashboard in wanted or not port_free(dashboard):
        dashboard = _free_ports(1, wanted)[0]
        notes.append(f"ray_dashboard_port {config.ray_dashboard_port} is taken; the dashboard "
                     f"listens on {dashboard}")
    picked = _free_ports(len(INTERNAL_PORTS), wanted | {dashboard})
    return PortPlan(head=config.ray_head_port, dashboard=dashboard, serve=config.serve_port,
                    internal=dict(zip(INTERNAL_PORTS, picked, strict=True)), notes=notes)


def _ray_cli() -> str:
    found = Path(sys.executable).with_name("ray")
    return str(found) if found.exists() else (shutil.which("ray") or "ray")


def ensure_auth_token(env: dict[str, str] | None = None) -> None:
    """Under Ray token auth (``RAY_AUTH_MODE=token``), make sure this user has a token:
    ``ray start --head`` refuses to start without one, where ``ray.init()`` creates it.
    Ray's own ``ray get-auth-token --generate`` looks where Ray looks (``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH``, ``~/.ray/auth_token``) and writes ``~/.ray/auth_token`` only
    when it finds none; its output (the token) is discarded.

    Raises:
        BackendUnavailable: the token could not be generated.
    """
    env = dict(os.environ if env is None else env)
    if env.get("RAY_AUTH_MODE") != "token":
        return
    done = subprocess.run([_ray_cli(), "get-auth-token", "--generate"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        raise BackendUnavailable(f"RAY_AUTH_MODE=token and no Ray token exists; generating "
                                 f"one failed: {last[0]}", field="RAY_AUTH_TOKEN")


def _record_path(home: Path) -> Path:
    return home / RECORD_NAME


def load_record(home: Path) -> HeadRecord | None:
    """The head ``up`` recorded under ``home`` if any of its processes still runs; a
    record of a head that is gone is removed. Its session id is a pid, which the system
    reuses (after a reboot, say): the session must still carry the head's Ray session
    name, or ``down`` would stop a stranger's processes."""
    path = _record_path(home)
    try:
        record = HeadRecord.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    if session_processes(record.sid) and (
            record.session_name is None or _session_name(record.sid) == record.session_name):
        return record
    path.unlink(missing_ok=True)
    return None


# -- processes ------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of ``pid``, or None when it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[3])


def session_processes(sid: int) -> list[int]:
    """Live processes in session ``sid`` (and any process they started that left it)."""
    if sid <= 1:
        return []
    parents: dict[int, int] = {}
    members: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None:
            continue
        parents[int(entry)] = stat[0]
        if stat[1] == sid:
            members.add(int(entry))
    grew = True
    while grew:  # descendants that called setsid() themselves
        more = {pid for pid, ppid in parents.items() if ppid in members and pid not in members}
        members |= more
        grew = bool(more)
    members.discard(os.getpid())
    return sorted(members)


def stop_session(sid: int, timeout_s: float = 10.0) -> int:
    """SIGTERM every process of session ``sid``, SIGKILL what is left after ``timeout_s``;
    how many there were."""
    pids = session_processes(sid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in session_processes(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while session_processes(sid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(pids)


def _session_name(sid: int) -> str | None:
    for pid in session_processes(sid):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in args:
            if arg.startswith(b"--session-name="):
                return arg.split(b"=", 1)[1].decode()
    return None


# -- start and stop -------------------------------------------------------------------------

def start_head(config: PlatformConfig, plan: PortPlan, num_cpus: int | None = None,
               timeout_s: float = 300.0) -> HeadRecord:
    """Run ``ray start --head`` on ``plan``'s ports in a session of its own and record it.

    Raises:
        BackendUnavailable: ``ray start`` failed (whatever it had started is stopped).
    """
    cmd = [_ray_cli(), "start", "--head", f"--port={plan.head}",
           f"--dashboard-port={plan.dashboard}", "--dashboard-host=127.0.0.1",
           "--disable-usage-stats",
           *(f"--{flag}={port}" for flag, port in plan.internal.items())]
    if num_cpus:
        cmd.append(f"--num-cpus={num_cpus}")
    ensure_auth_token()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except BaseException:
        proc.kill()
        stop_session(proc.pid)
        raise
    if proc.returncode != 0:
        stop_session(proc.pid)
        last = [line for line in err.strip().splitlines() if line.strip()][-1:] or ["no output"]
        raise BackendUnavailable(f"`ray start` failed (exit {proc.returncode}): {last[0]}; "
                                 "nothing was left running")
    record = HeadRecord(gcs_address=f"127.0.0.1:{plan.head}",
                        dashboard_url=f"http://127.0.0.1:{plan.dashboard}", sid=proc.pid,
                        session_name=_session_name(proc.pid), ports=plan,
                        started_at=time.time())
    config.home.mkdir(parents=True, exist_ok=True)
    path = _record_path(config.home)
    path.write_text(json.dumps(record.model_dump(mode="json"), indent=2))
    return record


def stop_head(record: HeadRecord, home: Path) -> int:
    """Stop the processes of the recorded head (no other Ray) and drop the record."""
    count = stop_session(record.sid)
    _record_path(home).unlink(missing_ok=True)
    return count


def check_stores(config: PlatformConfig, timeout_s: float = 3.0) -> None:
    """Fail fast, in one line, when a store the platform needs does not answer: the state
    store, and the online and stream Redis when configured.

    Raises:
        BackendUnavailable: naming the key and the (credential-free) URL.
    """
    import redis

    from mlray._private.redact import redact
    from mlray.storage import open_state_store

    try:
        open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix).close()
    except BackendUnavailable as exc:
        raise BackendUnavailable(f"state_url: {exc.message}") from exc
    for key in ("online_url", "stream_url"):
        url = getattr(config, key)
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            continue
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s,
                                      socket_timeout=timeout_s)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable(f"{key}: Redis at {redact(url)} does not answer: "
                                     f"{exc}") from exc
        finally:
            client.close()
