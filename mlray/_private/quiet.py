"""Keeping stdout for results: Ray, Tune and Ray Data print there from threads, C++ and
child processes, so a ``--json`` answer would arrive mixed with banners and warnings.

    with stdout_to_stderr():        # fd 1 and sys.stdout point at stderr inside
        ...                         # Ray starts, Tune runs, warnings go to stderr
        result_stream().write(json) # the one thing that reaches the real stdout

:data:`QUIET_ENV` holds the settings that stop Ray's own banners where a setting
exists (Tune's experiment box, Ray Data's progress bars); :func:`quiet_ray_env` sets
them unless the user set them already.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import TextIO

__all__ = ["QUIET_ENV", "quiet_ray_env", "result_stream", "stdout_to_stderr"]

#: Ray settings that keep its banners out of the output (Tune's legacy reporter prints
#: nothing at verbose=0, where the new one still prints its configuration box).
QUIET_ENV = {"RAY_AIR_NEW_OUTPUT": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}

_result: TextIO | None = None


def quiet_ray_env() -> None:
    """Set :data:`QUIET_ENV` in this process (and the Ray processes it starts), keeping
    any value the user set."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def result_stream() -> TextIO:
    """Where a command's result goes: the real stdout inside :func:`stdout_to_stderr`,
    else ``sys.stdout``."""
    return _result if _result is not None else sys.stdout


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def stdout_to_stderr(*, keep: bool = False) -> Iterator[TextIO]:
    """Send everything written to stdout (by Python, C++ or child processes) to stderr
    while the block runs; yield a stream on the real stdout for the result.

    Args:
        keep: leave stdout pointed at stderr afterwards (a process about to exit, whose
            Ray threads may still print until it does).
    """
    global _result
    original = sys.stdout
    original.flush()
    fd = _fileno(original)
    saved: int | None = None
    if fd is not None:  # a real file descriptor: move it (not just sys.stdout)
        saved = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)
        out: TextIO = os.fdopen(os.dup(saved), "w", encoding="utf-8", closefd=True)
    else:  # an in-memory stream (a test's capture): only Python writes can be moved
        out = original
    previous, _result = _result, out
    sys.stdout = sys.stderr
    try:
        yield out
    finally:
        out.flush()
        _result = previous
        if not keep:
            sys.stderr.flush()
            sys.stdout = original
            if saved is not None and fd is not None:
                os.dup2(saved, fd)
        if saved is not None:
            os.close(saved)
            out.close()
