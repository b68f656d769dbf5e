"""``mlray quotas`` and ``mlray usage`` in embedded mode (no Ray cluster running)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import cli, weights  # noqa: F401 (fixtures)


def test_quotas_set_show_and_enforced(cli, weights: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    code, out, _ = cli("quotas", "set", "--project", "team", "--models", "1", "--rps", "5",
                       "--json")
    assert code == 0
    assert json.loads(out)["models"] == 1 and json.loads(out)["requests_per_s"] == 5
    assert cli("-P", "team", "models", "register", "fraud", "-a", str(weights))[0] == 0
    code, _, err = cli("-P", "team", "models", "register", "churn", "-a", str(weights))
    assert code == 2
    assert "quota models of project 'team' exceeded: limit 1, in use 1" in err
    assert cli("models", "register", "churn", "-a", str(weights))[0] == 0  # other project
    code, out, _ = cli("quotas", "show", "--project", "team", "--json")
    shown = json.loads(out)
    assert shown["limits"]["models"] == 1 and shown["in_use"]["models"] == 1
    assert shown["in_use"]["storage_bytes"] == len(b"weights")
    code, out, _ = cli("quotas", "show", "-P", "team")
    assert code == 0 and "unlimited" in out and "models" in out
    code, out, _ = cli("quotas", "set", "-P", "team", "--unlimited", "models", "--json")
    assert json.loads(out)["models"] is None and json.loads(out)["requests_per_s"] == 5
    assert cli("quotas", "set", "-P", "team")[0] == 2  # no quota named
    assert cli("quotas", "set", "-P", "team", "--unlimited", "nope")[0] == 2


def test_usage_command(cli, weights: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    cli("-P", "team", "models", "register", "fraud", "-a", str(weights))
    code, out, _ = cli("usage", "--project", "team", "--since", "24h", "--json")
    report = json.loads(out)
    assert code == 0 and report["project"] == "team"
    assert report["storage_bytes"] == len(b"weights") and report["requests"] == 0
    code, out, _ = cli("usage", "-P", "team", "--since", "2026-01-01")
    assert code == 0 and "replica-seconds" in out and "storage bytes" in out
    assert cli("usage", "--since", "yesterday-ish")[0] == 2
