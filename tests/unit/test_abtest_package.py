"""mlray.abtest is Ray-free and its front door is documented."""

from __future__ import annotations

import subprocess
import sys

import mlray.abtest


def test_importing_abtest_imports_neither_ray_nor_statsmodels():
    code = ("import sys, mlray.abtest; "
            "print(sorted(m for m in ('ray', 'statsmodels') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve_and_have_docstrings():
    for name in mlray.abtest.__all__:
        obj = getattr(mlray.abtest, name)
        assert obj.__doc__, f"{name} has no docstring"
