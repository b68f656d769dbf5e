"""The ``mlray`` command line."""
