"""``python -m mlray.cli``: the same as the ``mlray`` command."""

from mlray.cli.main import entrypoint

entrypoint()
