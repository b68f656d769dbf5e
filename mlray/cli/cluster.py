"""``mlray cluster render``: the KubeRay manifests of this platform, one YAML file each."""

from __future__ import annotations

from pathlib import Path

import typer

from mlray.cli._common import JsonOpt, emit, state

app = typer.Typer(help="KubeRay manifests rendered from the platform config.",
                  no_args_is_help=True)

DEFAULT_SPEC = Path("configs/cluster.yaml")
DEFAULT_OUT = Path("cluster/out")


@app.command("render")
def render(
    config: Path = typer.Option(None, "--config", "-c",
                                help="Platform YAML (default: mlray's --config, or the "
                                     "built-in defaults)."),
    spec: Path = typer.Option(DEFAULT_SPEC, "--spec", "-s", help="Cluster spec YAML."),
    out: Path = typer.Option(DEFAULT_OUT, "--out", "-o", help="Directory to write into."),
    as_json: bool = JsonOpt,
) -> None:
    """Write RayCluster, RayService, RayJobs, Redis and PodMonitor manifests into OUT."""
    from mlray.cluster import load_cluster_spec, render_manifests, write_manifests
    from mlray.config import load_config

    platform = load_config(config or state.config_path)
    written = write_manifests(render_manifests(load_cluster_spec(spec), platform), out)
    rows = [[str(path)] for path in written]
    emit({"written": [str(p) for p in written]}, as_json, ("file",), rows,
         f"{len(written)} manifests in {out}")
