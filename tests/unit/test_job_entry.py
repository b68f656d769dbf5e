"""Job entrypoints mask credentials in their log lines and tracebacks."""

from __future__ import annotations

import subprocess
import sys

SECRET = "Pa55-w0rd-xyz"
SCRIPT = f"""
import logging
from jobs._entry import run_or_exit

def body():
    logging.getLogger("job").warning("state at redis://app:{SECRET}@db:6379/0")
    raise RuntimeError("cannot reach redis://app:{SECRET}@db:6379/0")

run_or_exit(body)
"""


def test_log_lines_and_tracebacks_of_a_job_hide_passwords() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 1
    assert "redis://app:***@db:6379/0" in done.stderr and "RuntimeError" in done.stderr
    assert SECRET not in done.stderr + done.stdout
