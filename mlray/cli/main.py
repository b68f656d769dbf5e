"""``mlray``: the platform's command line (typer + rich)."""

from __future__ import annotations

import os

# A cluster with token auth only accepts clients that say so before ray is imported.
os.environ.setdefault("RAY_AUTH_MODE", "token")

import contextlib
import sys
from pathlib import Path

import click
import typer

from mlray._private.quiet import quiet_ray_env, stdout_to_stderr
from mlray._private.ray_session import local_cpus
from mlray._private.redact import install_log_redaction, redact, redact_all
from mlray.cli import (
    abtest,
    audit,
    cluster,
    features,
    keys,
    models,
    monitoring,
    pipelines,
    quotas,
    runs,
    serving,
    training,
)
from mlray.cli._common import JsonOpt, emit, err_console, state
from mlray.config import PlatformConfig
from mlray.errors import MlrayError

app = typer.Typer(help="mlray: an ML platform on Ray.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
app.add_typer(models.app, name="models")
app.add_typer(runs.app, name="runs")
app.add_typer(training.jobs_app, name="jobs")
app.add_typer(features.app, name="features")
app.add_typer(cluster.app, name="cluster")
app.add_typer(monitoring.alerts_app, name="alerts")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(quotas.app, name="quotas")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(abtest.app, name="abtest")
app.command("usage")(quotas.usage)
app.command("drift")(monitoring.drift)
app.command("performance")(monitoring.performance)
app.command("train")(training.train)
app.command("tune")(training.tune)
app.command("validate")(models.validate)
for _command in (serving.deploy, serving.traffic, serving.rollback, serving.rollouts,
                 serving.retune):
    app.command(_command.__name__)(_command)


@app.callback()
def _options(
    config: Path = typer.Option(None, "--config", "-c", envvar="MLRAY_CONFIG",
                                help="Platform YAML (over configs/platform.yaml defaults)."),
    project: str = typer.Option(None, "--project", "-P", help="Project to work in."),
) -> None:
    state.config_path = config
    state.project = project


def _actor_states(namespace: str) -> dict[str, str]:
    import ray

    from actors import actor_names

    states = {}
    for name in actor_names():
        try:
            handle = ray.get_actor(name, namespace=namespace)
        except ValueError:
            states[name] = "NOT STARTED"
            continue
        try:
            ray.get(handle.ping.remote(), timeout=10)
            states[name] = "ALIVE"
        except Exception as exc:
            states[name] = f"UNREACHABLE ({type(exc).__name__})"
    return states


def _serving_state(config: object) -> dict[str, object]:
    """Model apps (desired, and what runs on Serve) and breakers, or why they cannot be
    read."""
    try:
        client = state.cluster_client()
        return {"url": f"http://127.0.0.1:{client.config.serve_port}",
                "apps": client.serving.apps(),
                "breakers": {k: v.model_dump(mode="json")
                             for k, v in client.serving.breakers().items()}}
    except MlrayError as exc:
        return {"error": str(exc)}


def _app_state(app: dict[str, object]) -> str:
    """One app's row: desired or not (and why) against its state on Serve."""
    why = app.get("why") or "-"
    wanted = f"desired ({why})" if app.get("desired") else f"not desired ({why})"
    running = str(app["status"])
    if running != "RUNNING" and app.get("message"):
        running += f": {app['message']}"
    return f"{wanted}; on Serve: {running}"


def _where(config: PlatformConfig) -> dict[str, object]:
    return {"state_url": config.resolved_state_url,
            "artifact_uri": config.resolved_artifact_uri,
            "online_url": config.online_url, "offline_uri": config.offline_uri}


def _status(as_json: bool, dashboard: str | None = None) -> None:
    """What the platform uses: on a cluster, the running actors' config (the local one only
    when no actors run), with a line per key where the local config differs."""
    from mlray._private.ray_head import load_record

    config = state.config()
    address = state.cluster_address(config)
    info: dict[str, object] = {
        "ray_address": address, "namespace": config.namespace, **_where(config),
        "mode": "cluster" if address else "embedded (no Ray cluster; CLI works in-process)",
    }
    if address:
        from actors import running_config
        from mlray._private.ray_session import ensure_ray
        from mlray.config import config_differences

        dashboard = ensure_ray(address, config.namespace) or dashboard
        record = load_record(config.home)
        if record is not None and record.address == address:
            dashboard = record.dashboard_url
        try:
            running = running_config(config.namespace)
            info["config_from"] = ("local config (no actors run)" if running is None
                                   else "actors")
        except Exception as exc:  # a restarting registry: say so, report the rest
            running = None
            info["config_from"] = (f"local config (the registry actor did not answer: "
                                   f"{type(exc).__name__})")
        if running is not None:
            info.update(_where(running))
            info["config_mismatch"] = list(config_differences(config, running).values())
        info["dashboard_url"] = dashboard
        info["actors"] = _actor_states(config.namespace)
        info["serving"] = _serving_state(config)
    info = redact_all(info)
    rows = [[k, v] for k, v in info.items()
            if k not in ("actors", "serving", "config_mismatch")]
    rows += [["config mismatch", line] for line in info.get("config_mismatch") or []]  # type: ignore[attr-defined]
    rows += [[f"actor {n}", s] for n, s in dict(info.get("actors") or {}).items()]  # type: ignore[call-overload]
    serving_info = dict(info.get("serving") or {})  # type: ignore[call-overload]
    rows += [[f"app {a['app']}", _app_state(a)] for a in serving_info.get("apps", [])]
    rows += [[f"breaker {k}", v["state"]] for k, v in serving_info.get("breakers", {}).items()]
    emit(info, as_json, ("", ""), rows, "mlray status")


def _check_settings(config: PlatformConfig) -> None:
    """Load the serving and alert settings the actors will load, so that a bad file fails
    `up` before anything starts (an actor failing in its constructor restarts forever)."""
    from mlray.serving.settings import load_serving_config

    load_serving_config(config.serving_config)
    if config.alerts_config:
        from mlray.alerts.rules import load_rules

        load_rules(config.alerts_config)


@app.command()
def up(
    num_cpus: int = typer.Option(
        None, "--num-cpus", min=1,
        help="Logical CPUs of the head (default: local_num_cpus, else the cores, at least 4)."),
    serve: bool = typer.Option(True, "--serve/--no-serve",
                               help="Also start Ray Serve and the mlray ingress (serve_port)."),
    as_json: bool = JsonOpt,
) -> None:
    """Start a local Ray head (on ray_head_port), the control-plane actors, serving, and
    the stream processors of streaming feature views (when stream_url is set).

    Before anything starts, the stores must answer and ray_head_port and serve_port must be
    free (else one line and nothing runs); the head's other ports are picked free. When a
    later step fails, the head this command started is stopped again.
    """
    from mlray._private import ray_head

    config = state.config()
    ray_head.check_stores(config)
    _check_settings(config)
    started = None
    if state.cluster_address(config) is None:
        plan = ray_head.plan_ports(config, serve=serve)
        for note in plan.notes:
            err_console.print(f"note: {note}", markup=False, highlight=False)
        # At least 4 logical CPUs, as a local Ray gets: on two cores the README's training
        # config (two workers, plus Ray Data tasks to feed them) must fit.
        started = ray_head.start_head(config, plan,
                                      num_cpus or local_cpus(config.local_num_cpus))
    try:
        # The platform runs with one config: `up` with another is refused, not adopted.
        client = state.client(on_mismatch="raise", as_platform=True)
        from actors import start_actors

        start_actors(client.config)  # all of them: alerts, pipelines' triggers, rollouts
        if serve:
            from mlray.serving.launch import start_serving

            start_serving(client.config)
        if client.config.stream_url and client.features.streaming_views():
            client.features.start_streams()
        first_key = client.keys.bootstrap(config.user)
    except BaseException as exc:
        if started is None:
            raise
        import ray

        ray.shutdown()
        ray_head.stop_head(started, config.home)
        if isinstance(exc, MlrayError) and type(exc).__init__ is MlrayError.__init__:
            raise type(exc)(f"{exc.message}; the Ray head this `mlray up` started was "
                            "stopped", field=exc.field) from exc
        raise
    if first_key is not None:  # on stderr: stdout stays the status (its JSON with --json)
        err_console.print(f"bootstrap admin key (every project), shown once: "
                          f"{first_key.key.get_secret_value()}\n{keys.STORE_HINT}",
                          markup=False, highlight=False, soft_wrap=True)
    _status(as_json)


@app.command()
def down(as_json: bool = JsonOpt) -> None:
    """Stop the Ray head `mlray up` started: its own processes only (other Ray clusters on
    this host keep running). On a cluster mlray did not start, stop only the control-plane
    actors. State is kept."""
    from mlray._private.ray_head import load_record, stop_head

    config = state.config()
    record = load_record(config.home)
    explicit = config.ray_address or os.environ.get("RAY_ADDRESS")
    if record is not None and explicit in (None, "", record.address):
        count = stop_head(record, config.home)
        emit({"stopped": "actors and head", "address": record.address, "processes": count},
             as_json, ("",),
             [[f"stopped the Ray head at {record.address} that `mlray up` started "
               f"({count} processes), with its actors and Serve"]])
        return
    if not explicit:
        emit({"stopped": False}, as_json, ("",), [["no Ray cluster is running"]])
        return
    from mlray._private.ray_session import ensure_ray

    ensure_ray(explicit, config.namespace)
    import ray

    from actors import actor_names

    for name in actor_names():
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=config.namespace), no_restart=True)
    ray.shutdown()
    emit({"stopped": "actors"}, as_json, ("",),
         [[f"stopped the actors; the cluster at {explicit} was not started by `mlray up` "
           "and keeps running"]])


@app.command()
def status(as_json: bool = JsonOpt) -> None:
    """Where the platform runs: Ray address, dashboard, actors, storage."""
    _status(as_json)


def main(argv: list[str] | None = None, *, keep_redirect: bool = False) -> int:
    """Run the CLI; mlray errors print one line and exit 2 (user) or 1 (platform).

    Only the command's result (its table, or with ``--json`` its JSON) reaches stdout:
    whatever Ray, Tune or the command prints besides (from Python, C++ or child
    processes) goes to stderr. ``keep_redirect`` leaves it so afterwards (the console
    script, whose Ray threads print until exit). Help stays on stdout.
    """
    quiet_ray_env()  # Tune's box and Ray Data's bars stay out of the output
    install_log_redaction()
    args = sys.argv[1:] if argv is None else argv
    if not args or "--help" in args:
        return _run(argv)
    with stdout_to_stderr(keep=keep_redirect):
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except MlrayError as exc:
        where = f" [{exc.field}]" if exc.field else ""
        err_console.print(f"error{where}: {exc.message}", markup=False, highlight=False)
        return exc.exit_code
    except (typer.Exit, click.exceptions.Exit) as exc:
        return int(getattr(exc, "exit_code", 0))
    except (typer.Abort, click.exceptions.Abort):
        err_console.print("aborted")
        return 1
    except (typer.TyperException, click.ClickException) as exc:
        exc.show()  # type: ignore[union-attr]
        return int(getattr(exc, "exit_code", 2))
    except Exception as exc:
        if os.environ.get("MLRAY_DEBUG"):
            raise
        err_console.print(f"error: {type(exc).__name__}: {redact(str(exc))} (MLRAY_DEBUG=1 "
                          "shows the traceback)", markup=False, highlight=False)
        return 1
    return 0


def entrypoint() -> None:
    """Console-script entry."""
    sys.exit(main(keep_redirect=True))
