"""Who may call which HTTP endpoint of the ingress: ``Authorization: Bearer <key>``.

:data:`ENDPOINT_ROLES` is the one table of the least role each endpoint needs in the
ingress's project (README "HTTP authentication" shows the same table; a test keeps them
equal). ``None`` marks the public health probes. A path no route serves (a 404 or 405
to be) needs :data:`UNMATCHED_ROLE`, so nothing is told to a caller without a key.

:class:`Access` turns the header into a :class:`~mlray.identity.Caller` with the replica's
:class:`~mlray.auth.authenticator.Authenticator`: a key verified here within its TTL is
answered on the event loop (no I/O); otherwise the check runs off the loop, one at a time
per key (concurrent requests with the same key wait for the same check) and at most
``max_checks`` at once. A refused credential is remembered for the TTL (revoked, expired
and unknown keys never become valid), so a client retrying a dead key costs no hash.

:class:`AccessMiddleware` is the ASGI shell: it answers 401 (with ``WWW-Authenticate``)
and 403 before any route runs, so a refusal never depends on whether a model exists.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from mlray._private.denials import DENIED
from mlray.auth.authenticator import Authenticator, store_authenticator
from mlray.auth.book import PUBLIC_REFUSAL
from mlray.auth.keys import parse_key
from mlray.config import PlatformConfig
from mlray.errors import MlrayError, PermissionDenied, Unauthenticated
from mlray.identity import Caller, Role
from mlray.storage.base import AuditEntry, StateStore

__all__ = ["CALLER_STATE", "ENDPOINT_ROLES", "UNMATCHED_ROLE", "Access", "AccessMiddleware",
           "Grant", "bearer", "document_access", "endpoint_of", "open_access", "rate_bucket",
           "replica_access", "route_path"]

log = logging.getLogger("mlray.ingress")

#: The least role in the ingress's project each endpoint needs; None: public.
ENDPOINT_ROLES: dict[str, Role | None] = {
    "GET /v2/health/live": None,
    "GET /v2/health/ready": None,
    "GET /v2": Role.predict,
    "GET /openapi.json": Role.predict,
    "GET /docs": Role.predict,
    "GET /docs/oauth2-redirect": Role.predict,
    "GET /redoc": Role.predict,
    "POST /v1/predict": Role.predict,
    "POST /v1/predict/batch": Role.predict,
    "POST /v2/models/{model}/infer": Role.predict,
    "POST /v2/models/{model}/versions/{version}/infer": Role.predict,
    "GET /v2/models/{model}/ready": Role.predict,
    "GET /v2/models/{model}/versions/{version}/ready": Role.predict,
    "GET /v1/models": Role.viewer,
    "GET /v2/models/{model}": Role.viewer,
    "GET /v2/models/{model}/versions/{version}": Role.viewer,
    "POST /v1/features": Role.viewer,
    "POST /v1/features/push": Role.editor,
    "POST /v1/feedback": Role.editor,
    "POST /v1/pipelines/{name}/runs": Role.editor,
    "GET /v1/pipelines/runs/{run_id}": Role.viewer,
}
#: What a request no route serves needs (its 404 or 405 is no one else's business).
UNMATCHED_ROLE = Role.predict
#: The key of the request's :class:`Grant` in the ASGI scope's ``state``.
CALLER_STATE = "mlray_grant"
REALM = 'Bearer realm="mlray"'
MAX_CREDENTIAL_CHARS = 4096
NO_BEARER = "an API key is required: send the header 'Authorization: Bearer <key>'"


@dataclass(frozen=True)
class Grant:
    """Who a request is, and the rate-limit bucket it draws from (never client-chosen)."""

    caller: Caller
    bucket: str


def bearer(header: str | None) -> str | None:
    """The credential of an ``Authorization`` header, or None when there is none.

    Raises:
        Unauthenticated: a header that is not ``Bearer <credential>``.
    """
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL_CHARS:
        raise Unauthenticated("malformed Authorization header: use 'Bearer <key>'",
                              field="authorization")
    return credential


class Access:
    """Authentication and authorisation of one ingress replica for ``project``.

    Args:
        project: the one project the ingress serves.
        authenticator: credential → caller; None serves everyone as ``anonymous``
            (``auth: none``: the platform binds loopback only).
        anonymous: who every request is without an authenticator.
        audit: appends an audit entry (called off the event loop); None: no audit.
        max_checks: credential checks running off the event loop at once.
    """

    def __init__(self, project: str, authenticator: Authenticator | None, *,
                 anonymous: Caller | None = None,
                 audit: Callable[[AuditEntry], Any] | None = None, max_checks: int = 4,
                 max_refused: int = 10_000, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        if authenticator is None and anonymous is None:
            raise ValueError("without an authenticator, name the anonymous caller")
        self.project = project
        self.authenticator = authenticator
        self.anonymous = anonymous
        self._audit = audit
        self._max_checks = max_checks
        self._slots: asyncio.Semaphore | None = None
        self._checking: dict[bytes, asyncio.Future[Caller]] = {}
        self._refused: OrderedDict[bytes, float] = OrderedDict()
        self._max_refused = max_refused
        self._denied: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._pepper = secrets.token_bytes(32)
        self._clock = clock

    @property
    def ttl_s(self) -> float:
        """How long a verified or refused credential is trusted (the revocation bound)."""
        return self.authenticator.ttl_s if self.authenticator is not None else 0.0

    async def grant(self, authorization: str | None, client: str, endpoint: str,
                    role: Role | None) -> Grant:
        """The grant of a request to ``endpoint`` that needs ``role`` (None: public).

        Raises:
            Unauthenticated: no key, or one that is malformed, unknown, expired or revoked.
            PermissionDenied: the caller lacks ``role`` in the project.
        """
        if self.authenticator is None:
            assert self.anonymous is not None
            return Grant(self.anonymous, f"client:{client}")
        if role is None:
            return Grant(Caller(user="anonymous"), f"client:{client}")
        credential = bearer(authorization)
        if credential is None:
            raise Unauthenticated(NO_BEARER)
        caller = self.authenticator.cached(credential) or await self._check(credential)
        held = caller.role_in(self.project)
        if held is None or held < role:
            self._record_denial(caller, endpoint, held, role)
            raise PermissionDenied(
                f"user {caller.user!r} has {held.name if held else 'no role'} in project "
                f"{self.project!r}; {endpoint} needs {role.name}")
        key_id = parse_key(credential)
        return Grant(caller, f"key:{key_id}" if key_id else f"user:{caller.user}")

    async def _check(self, credential: str) -> Caller:
        """The slow path, off the event loop: one check per credential at a time."""
        digest = hashlib.blake2b(credential.encode(), key=self._pepper, digest_size=32).digest()
        refused_at = self._refused.get(digest)
        if refused_at is not None and self._clock() - refused_at < self.ttl_s:
            raise Unauthenticated(PUBLIC_REFUSAL)
        pending = self._checking.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._run_check(credential, digest))
            self._checking[digest] = pending
            pending.add_done_callback(lambda _: self._checking.pop(digest, None))
        return await asyncio.shield(pending)

    async def _run_check(self, credential: str, digest: bytes) -> Caller:
        if self._slots is None:  # made on the loop that uses it
            self._slots = asyncio.Semaphore(self._max_checks)
        assert self.authenticator is not None
        async with self._slots:
            try:
                return await asyncio.to_thread(self.authenticator.caller, credential)
            except Unauthenticated:
                self._refused[digest] = self._clock()
                self._refused.move_to_end(digest)
                if len(self._refused) > self._max_refused:
                    self._refused.popitem(last=False)
                raise

    def _record_denial(self, caller: Caller, endpoint: str, held: Role | None,
                       role: Role) -> None:
        """An ``auth.denied`` audit entry, off the event loop; once per user and endpoint
        per TTL (a client looping on a 403 does not flood the log)."""
        if self._audit is None:
            return
        now, seen = self._clock(), (caller.user, endpoint)
        last = self._denied.get(seen)
        if last is not None and now - last < self.ttl_s:
            return
        self._denied[seen] = now
        self._denied.move_to_end(seen)
        if len(self._denied) > self._max_refused:
            self._denied.popitem(last=False)
        entry = AuditEntry(user=caller.user, project=self.project, action=DENIED,
                           target=f"http:{endpoint}",
                           after={"reason": f"has {held.name if held else 'no role'}; "
                                            f"needs {role.name}"})
        asyncio.get_running_loop().run_in_executor(None, self._write_audit, entry)

    def _write_audit(self, entry: AuditEntry) -> None:
        assert self._audit is not None
        try:
            self._audit(entry)
        except Exception as err:  # the refusal stands whatever the store does
            log.warning("could not audit a refused %s by %r: %s", entry.target, entry.user, err)


def open_access(config: PlatformConfig, ttl_s: float) -> Access:
    """The access of an ingress replica serving ``config.project``: with ``auth: keys``,
    keys are read from the platform's state store and cached ``ttl_s`` seconds; with
    ``auth: none`` every request is the local admin (no store is opened)."""
    from mlray.storage import open_state_store

    if config.auth == "none":
        return Access(config.project, None, anonymous=Caller.local_admin(config.user))
    store: StateStore = open_state_store(config.resolved_state_url,
                                         redis_prefix=config.redis_prefix)
    authenticator = store_authenticator(store, config.auth, config.user, ttl_s)
    return Access(config.project, authenticator,
                  audit=lambda entry: store.apply([], entry))


def replica_access() -> Access:
    """The :class:`Access` of the Serve replica this runs in (its ``access`` attribute)."""
    from ray import serve

    return serve.get_replica_context().servable_object.access  # type: ignore[no-any-return]


def rate_bucket(request: Any) -> str:
    """The rate-limit bucket of a request (a Starlette ``Request``): its key's id, or its
    user, or (auth none) its client address; never a header the client chooses."""
    grant = request.scope.get("state", {}).get(CALLER_STATE)
    if isinstance(grant, Grant):
        return grant.bucket
    return f"client:{request.client.host if request.client else 'unknown'}"


def _compile(template: str) -> re.Pattern[str]:
    """A route template as Starlette matches it (a ``{param}`` is one path segment)."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p)
                                    for p in parts) + "$")


_PATTERNS = [(endpoint.split(" ", 1)[0], _compile(endpoint.split(" ", 1)[1]), endpoint)
             for endpoint in ENDPOINT_ROLES]


def route_path(scope: dict[str, Any]) -> str:
    """The request's path inside its app (``root_path``, a Serve route prefix, removed)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root):] or "/"
    return path


def endpoint_of(method: str, path: str) -> tuple[str, Role | None]:
    """The table entry serving ``method path`` (HEAD as GET), or the unmatched one."""
    method = "GET" if method == "HEAD" else method
    for wanted, pattern, endpoint in _PATTERNS:
        if wanted == method and pattern.match(path):
            return endpoint, ENDPOINT_ROLES[endpoint]
    return f"{method} (no route)", UNMATCHED_ROLE


def document_access(spec: dict[str, Any]) -> None:
    """Declare the Bearer scheme in an OpenAPI ``spec`` and, on each operation, whether it
    needs a key and which least role (``x-mlray-role``) from :data:`ENDPOINT_ROLES`."""
    schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearer"] = {"type": "http", "scheme": "bearer",
                         "description": "An mlray API key (auth: keys); see x-mlray-role."}
    for path, operations in spec.get("paths", {}).items():
        for method, operation in operations.items():
            role = ENDPOINT_ROLES.get(f"{method.upper()} {path}", Role.admin)
            operation["security"] = [] if role is None else [{"bearer": []}]
            operation["x-mlray-role"] = "public" if role is None else role.name


def _refusal(exc: MlrayError, presented: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    headers = [(b"content-type", b"application/json")]
    if isinstance(exc, Unauthenticated):
        challenge = REALM + (', error="invalid_token"' if presented else "")
        headers.append((b"www-authenticate", challenge.encode()))
    return exc.http_status, headers, orjson.dumps(exc.to_dict())


class AccessMiddleware:
    """ASGI middleware: every HTTP request is granted (or refused) before routing.

    Args:
        app: the ASGI app it wraps.
        locate: the :class:`Access` to use (looked up on the first request: the replica
            is built after the app).
    """

    def __init__(self, app: Any, locate: Callable[[], Access] = replica_access) -> None:
        self.app = app
        self._locate = locate
        self._access: Access | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._access is None:
            self._access = self._locate()
        endpoint, role = endpoint_of(scope["method"], route_path(scope))
        headers = dict(scope.get("headers") or ())
        raw = headers.get(b"authorization")
        authorization = raw.decode("latin-1") if raw is not None else None
        client = scope.get("client")
        try:
            grant = await self._access.grant(authorization, client[0] if client else "unknown",
                                             endpoint, role)
        except MlrayError as exc:
            status, out_headers, body = _refusal(exc, authorization is not None)
            await send({"type": "http.response.start", "status": status,
                        "headers": out_headers})
            await send({"type": "http.response.body", "body": body})
            return
        scope["state"] = {**scope.get("state", {}), CALLER_STATE: grant}
        await self.app(scope, receive, send)
