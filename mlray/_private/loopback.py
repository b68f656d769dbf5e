"""Start a server process on a loopback port and wait until it listens."""

from __future__ import annotations

import socket
import subprocess
import time

from mlray.errors import BackendUnavailable

__all__ = ["start_listening"]


def start_listening(argv: list[str], port: int, what: str,
                    timeout_s: float) -> subprocess.Popen[bytes]:
    """Run ``argv`` in a process session of its own and return it once 127.0.0.1:``port``
    accepts connections; if it exits or ``timeout_s`` passes first, kill it and raise
    :class:`BackendUnavailable` naming ``what``."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                raise BackendUnavailable(f"{what} on port {port} did not start") from None
            time.sleep(0.1)
