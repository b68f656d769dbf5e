"""``mlray keys``: create, list and revoke API keys (the secret is printed once)."""

from __future__ import annotations

import time

import typer

from mlray.auth import ApiKey, IssuedKey, parse_duration
from mlray.cli._common import JsonOpt, emit, err_console, parse_pairs, state, when
from mlray.errors import InvalidInput

app = typer.Typer(help="API keys: who may do what in which project.", no_args_is_help=True)

STORE_HINT = ("store it in a secret manager or your shell profile as MLRAY_API_KEY; it is "
              "shown only now and cannot be recovered (revoke and create another if lost)")


def _rows(keys: list[ApiKey]) -> list[list[object]]:
    now = time.time()
    return [[k.key_id, k.user, " ".join(f"{p}={r.name}" for p, r in sorted(k.roles.items())),
             k.state(now), when(k.created_at), when(k.expires_at) or "never",
             when(k.last_used_at)] for k in keys]


def _print_issued(issued: IssuedKey, as_json: bool) -> None:
    """Print a new key once: the secret on stdout, how to keep it on stderr."""
    secret = issued.key.get_secret_value()
    if as_json:
        emit({**issued.info.model_dump(mode="json"), "key": secret}, True)
    else:
        emit(None, False, ("",), [[secret]])
    err_console.print(f"API key {issued.info.key_id} for {issued.info.user}: {STORE_HINT}",
                      markup=False, highlight=False)


@app.command()
def create(
    user: str = typer.Option(..., "--user", "-u", help="Who (or which service) holds it."),
    role: list[str] = typer.Option(..., "--role", "-r",
                                   help="project=role (predict, viewer, editor, admin); "
                                        "'*' for every project; repeat for several."),
    expires: str = typer.Option("90d", "--expires",
                                help="Lifetime: 90m, 12h, 30d, 2w or never."),
    description: str = typer.Option("", "--description", "-d"),
    as_json: bool = JsonOpt,
) -> None:
    """Issue a key and print it once (only its hash is kept)."""
    roles = parse_pairs(role, "role")
    issued = state.client().keys.create(user, roles, expires_in_s=parse_duration(expires),
                                        description=description)
    _print_issued(issued, as_json)


@app.command("list")
def list_(
    all_projects: bool = typer.Option(False, "--all", help="Every project (admin of '*')."),
    as_json: bool = JsonOpt,
) -> None:
    """Keys with a role in the project: ids, users, roles, state; never a secret."""
    keys = state.client().keys.list(all_projects=all_projects)
    emit(keys, as_json, ("id", "user", "roles", "state", "created", "expires", "last used"),
         _rows(keys), whole=("id",))


@app.command()
def revoke(key_id: str = typer.Argument(..., help="The key's public id."),
           as_json: bool = JsonOpt) -> None:
    """Revoke a key: it is refused from now on."""
    key = state.client().keys.revoke(key_id)
    emit(key, as_json, ("id", "user", "roles", "state", "created", "expires", "last used"),
         _rows([key]), whole=("id",))


@app.command()
def bootstrap(user: str = typer.Option("admin", "--user", "-u",
                                       help="Who holds the first key."),
              as_json: bool = JsonOpt) -> None:
    """Issue the first admin key of every project, once, on a cluster `mlray up` did not
    start (KubeRay: run it in the head pod). It acts as the platform, so it needs what the
    platform has: the Ray cluster and its state store. Refused once any key exists."""
    client = state.cluster_client(as_platform=True)
    issued = client.keys.bootstrap(user)
    if issued is None:
        raise InvalidInput("keys exist already: the bootstrap key is issued only on a store "
                           "without keys (ask an admin for one: `mlray keys create`)",
                           field="keys")
    _print_issued(issued, as_json)
