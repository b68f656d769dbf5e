"""start_listening: a server is handed back once its port answers; one that dies is named."""

from __future__ import annotations

import sys

import pytest

from mlray._private.loopback import start_listening
from mlray.errors import BackendUnavailable
from tests.conftest import free_port


def test_returns_the_server_once_its_port_answers() -> None:
    port = free_port()
    proc = start_listening([sys.executable, "-m", "http.server", "-b", "127.0.0.1", str(port)],
                           port, "http.server", 30)
    try:
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_server_that_exits_is_named() -> None:
    port = free_port()
    with pytest.raises(BackendUnavailable, match=f"tiny server on port {port} did not start"):
        start_listening([sys.executable, "-c", "raise SystemExit(3)"], port, "tiny server", 30)
