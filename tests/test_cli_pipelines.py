"""``mlray pipelines`` in embedded mode (no Ray cluster: stages run in the CLI's threads)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import cli  # noqa: F401 (fixture)

YAML = """
pipelines:
- name: nightly
  parameters: {value: {type: int, default: 2}}
  stages:
  - {name: a, kind: 'tests.pipeline_stages:emit', params: {value: $value, log: LOG}}
  - {name: b, kind: 'tests.pipeline_stages:emit', params: {value: 3, log: LOG}}
  - {name: sum, kind: 'tests.pipeline_stages:add', depends_on: [a, b], params: {log: LOG}}
  - {name: gate, kind: approval, depends_on: [sum], approval: {timeout_s: 3600}}
  - {name: after, kind: 'tests.pipeline_stages:add', depends_on: [gate, sum]}
"""


def test_apply_run_approve_show_and_a_cached_rerun(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    log = tmp_path / "log"
    defs = tmp_path / "pipelines.yaml"
    defs.write_text(YAML.replace("LOG", str(log)))
    code, _, err = cli("pipelines", "apply", str(defs))
    assert code != 0 and "mlray pipelines code --allow tests.pipeline_stages:emit" in err
    code, out, _ = cli("pipelines", "code", "--allow", "tests.pipeline_stages", "--json")
    assert code == 0 and json.loads(out) == ["tests.pipeline_stages"]
    code, out, _ = cli("pipelines", "code")
    assert code == 0 and "tests.pipeline_stages" in out
    code, out, _ = cli("pipelines", "apply", str(defs), "--json")
    assert code == 0 and json.loads(out)["added"] == ["nightly"]
    code, out, _ = cli("pipelines", "apply", str(defs))
    assert code == 0 and "unchanged" in out

    code, out, _ = cli("pipelines", "run", "nightly", "-p", "value=4", "--wait", "--json")
    run = json.loads(out)
    assert code == 0 and run["state"] == "WAITING_APPROVAL"
    assert run["stages"]["gate"]["state"] == "WAITING_APPROVAL"
    run_id = run["run_id"]

    code, _, err = cli("pipelines", "approve", run_id, "--stage", "sum")
    assert code != 0 and "not waiting for approval" in err
    code, out, _ = cli("pipelines", "approve", run_id, "--stage", "gate", "-m", "ok",
                       "--wait", "--json")
    done = json.loads(out)
    assert code == 0 and done["state"] == "SUCCEEDED"
    assert done["stages"]["gate"]["approved_by"] == "local"

    code, out, _ = cli("pipelines", "show", run_id)
    assert code == 0 and f"nightly run {run_id}: SUCCEEDED" in out
    code, out, _ = cli("pipelines", "show", run_id, "--json")
    assert json.loads(out)["stages"]["gate"]["message"] == "approved by local: ok"
    code, out, _ = cli("pipelines", "list", "--json")
    assert json.loads(out)[0]["last_state"] == "SUCCEEDED"

    code, out, _ = cli("pipelines", "run", "nightly", "-p", "value=4", "--wait", "--json")
    again = json.loads(out)
    assert again["stages"]["sum"]["state"] == "CACHED"
    assert sorted(log.read_text().split()) == ["a", "b", "sum"]  # nothing ran twice
    code, out, _ = cli("pipelines", "cancel", again["run_id"], "--json")
    assert code == 0 and json.loads(out)["state"] == "CANCELLED"
    code, out, _ = cli("pipelines", "runs", "nightly", "--json")
    assert [r["state"] for r in json.loads(out)] == ["CANCELLED", "SUCCEEDED"]


def test_bad_definitions_and_parameters_are_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    assert cli("pipelines", "code", "--allow", "tests.pipeline_stages")[0] == 0
    defs = tmp_path / "bad.yaml"
    defs.write_text("pipelines:\n- name: x\n  stages:\n"
                    "  - {name: a, kind: 'tests.pipeline_stages:emit', depends_on: [a]}\n")
    code, _, err = cli("pipelines", "apply", str(defs))
    assert code != 0 and "cycle in depends_on: a -> a" in err and "bad.yaml" in err
    defs.write_text(YAML.replace("LOG", str(tmp_path / "log")))
    assert cli("pipelines", "apply", str(defs))[0] == 0
    code, _, err = cli("pipelines", "run", "nightly", "-p", "value=four")
    assert code != 0 and "parameter 'value' must be int" in err
    code, _, err = cli("pipelines", "run", "missing")
    assert code != 0 and "no pipeline 'missing'" in err
