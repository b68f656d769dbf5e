"""The keys service: issue, list, revoke and resolve API keys, over a :class:`StateStore`.

Records live in the ``api_keys`` collection under their public id and hold only a hash
(see :mod:`mlray.auth.keys`). Who may do what: creating a key needs admin of every project
it grants a role in (a ``*`` role needs admin of ``*``); revoking needs the same over the
key's projects; listing needs admin of the project (or of ``*`` for every key).
:meth:`KeyBook.resolve` needs no caller: presenting the key is the proof.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
)

from mlray._private.validation import boundary
from mlray.auth.keys import (
    DEFAULT_PARAMS,
    KEY_ID_PATTERN,
    KeyHash,
    Refusal,
    ScryptParams,
    hash_key,
    new_key,
    parse_key,
    verify_key,
)
from mlray.errors import (
    Conflict,
    InvalidInput,
    MlrayError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from mlray.identity import ALL_PROJECTS, Caller, Role, check_project_name
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["COLLECTION", "PUBLIC_REFUSAL", "UNAUTHENTICATED", "ApiKey", "IssuedKey", "KeyBook"]

COLLECTION = "api_keys"
_MARKER = ("api_keys_meta", "bootstrap")
#: Names the platform's own credentials act under: no key may be issued to them.
RESERVED_USERS = frozenset({"mlray-platform", "mlray-bootstrap"})
#: The one answer every refused key gets, whatever the reason.
PUBLIC_REFUSAL = "invalid, expired or revoked API key"
#: The audit action of a refused key (``after.reason`` says why; never the secret).
UNAUTHENTICATED = "auth.unauthenticated"
#: last_used_at is written at most this often per key (a resolve is otherwise read-only).
LAST_USED_EVERY_S = 60.0

log = logging.getLogger("mlray.auth")


class ApiKey(BaseModel):
    """What may be shown about a key: never its secret nor its hash."""

    model_config = ConfigDict(frozen=True)

    key_id: str
    user: str = Field(min_length=1, max_length=128)
    roles: dict[str, Role]
    created_at: float
    created_by: str
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    revoked_by: str | None = None
    description: str = Field("", max_length=256)

    @field_validator("roles", mode="before")
    @classmethod
    def _names(cls, roles: dict[str, object]) -> dict[str, object]:
        return {p: Role[r] if isinstance(r, str) else r for p, r in roles.items()}

    @field_serializer("roles")
    def _role_names(self, roles: dict[str, Role]) -> dict[str, str]:
        return {p: r.name for p, r in roles.items()}

    def caller(self) -> Caller:
        """The identity this key stands for."""
        return Caller(user=self.user, roles=self.roles)

    def state(self, now: float) -> str:
        """``active``, ``revoked`` or ``expired`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def stored(self) -> dict[str, object]:
        """The JSON form, roles by name."""
        return self.model_dump(mode="json")


UserName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S(.*\S)?$")]
Description = Annotated[str, Field(max_length=256)]


class IssuedKey(BaseModel):
    """A new key and its record; ``key`` is shown once (its repr is masked)."""

    model_config = ConfigDict(frozen=True)

    info: ApiKey
    key: SecretStr


class KeyBook:
    """API keys on a state store; ``clock`` is injectable for expiry tests."""

    #: Methods that take no caller and answer only the platform (admin of every project).
    PLATFORM = frozenset({"bootstrap"})
    #: Methods that take no credential at all (presenting the key is the proof).
    PUBLIC = frozenset({"resolve"})

    def __init__(self, store: StateStore, *, clock: Callable[[], float] = time.time,
                 params: ScryptParams = DEFAULT_PARAMS) -> None:
        self._store = store
        self.clock = clock
        self.params = params
        self._decoy: KeyHash | None = None

    @property
    def store(self) -> StateStore:
        """Where the key records live."""
        return self._store

    @boundary
    def create_key(self, caller: Caller, project: str, user: UserName, roles: dict[str, str],
                   *, expires_in_s: float | None = None,
                   description: Description = "") -> IssuedKey:
        """Issue a key for ``user`` with ``roles`` ({project or '*': role name}); it
        expires ``expires_in_s`` from now (None: never). ``project`` is the caller's
        working project (unused: the roles say where the key reaches)."""
        granted = _roles(roles)
        for target in granted:
            caller.require(target, Role.admin)
        if user in RESERVED_USERS:
            raise InvalidInput(f"user {user!r} is reserved for the platform", field="user")
        if expires_in_s is not None and expires_in_s <= 0:
            raise InvalidInput("expires_in_s must be positive", field="expires_in_s")
        return self._issue(caller.user, user, granted, expires_in_s, description)

    def bootstrap(self, user: str) -> IssuedKey | None:
        """An admin key of every project for ``user``, when no key exists yet; else None.
        Only ever issued once per store (a marker document is written with it)."""
        if self._store.list(COLLECTION, limit=1):
            return None
        try:
            return self._issue("mlray-bootstrap", user, {ALL_PROJECTS: Role.admin}, None,
                               "bootstrap admin key", marker=True)
        except Conflict:
            return None

    @boundary
    def list_keys(self, caller: Caller, project: str, *,
                  all_projects: bool = False) -> list[ApiKey]:
        """Keys holding a role in ``project`` (admin there), or every key (admin of '*')."""
        scope = ALL_PROJECTS if all_projects else project
        caller.require(scope, Role.admin)
        keys = [ApiKey(**_public(d.data)) for d in self._store.list(COLLECTION)]
        if all_projects:
            return keys
        # a project's admin sees the keys naming that project, not every '*' key
        return [k for k in keys if project in k.roles
                or (ALL_PROJECTS in k.roles and caller.role_in(ALL_PROJECTS) == Role.admin)]

    @boundary
    def revoke_key(self, caller: Caller, project: str, key_id: str) -> ApiKey:
        """Revoke ``key_id`` for good (revoking twice is a no-op).

        The caller must administer every project the key reaches. Short of admin of
        every project, a key that does not exist is refused as one in another project
        is (the same PermissionDenied), so no key's existence shows outside its projects.
        """
        caller.require(project, Role.admin)
        doc = self._store.get(COLLECTION, key_id) if parse_id(key_id) else None
        if doc is None and caller.role_in(ALL_PROJECTS) == Role.admin:
            raise NotFound(f"no API key {key_id!r}", field="key_id")
        key = ApiKey(**_public(doc.data)) if doc is not None else None
        if key is None or any((caller.role_in(t) or 0) < Role.admin for t in key.roles):
            raise PermissionDenied(f"user {caller.user!r} may not revoke key {key_id!r}: it "
                                   "does not exist or reaches a project they do not administer")
        assert doc is not None
        if key.revoked_at is not None:
            return key
        now = self.clock()
        revoked = key.model_copy(update={"revoked_at": now, "revoked_by": caller.user})
        self._store.put(COLLECTION, key_id, {**doc.data, **revoked.stored()},
                       expected_version=doc.version,
                       audit=_audit(caller.user, "keys.revoke", revoked))
        return revoked

    def resolve(self, key: str) -> Caller:
        """The caller ``key`` stands for: what the client calls once, on connect.

        Raises:
            Unauthenticated: one public message for every reason; the reason goes to the
                log and the audit log with the key's public id, never its secret.
        """
        found = self.check(key)
        if isinstance(found, Refusal):
            key_id = parse_key(key) or "-"
            log.warning("API key refused: %s (id %s)", found.value, key_id)
            entry = AuditEntry(user=f"key:{key_id}", project=ALL_PROJECTS,
                               action=UNAUTHENTICATED, target=f"{COLLECTION}/{key_id}",
                               after={"reason": found.value})
            try:
                self._store.apply([], entry)
            except MlrayError as err:  # the refusal stands even when it cannot be recorded
                log.warning("could not audit a refused API key (id %s): %s", key_id, err)
            raise Unauthenticated(PUBLIC_REFUSAL)
        return found.caller()

    def record(self, key_id: str) -> ApiKey | None:
        """The public record of ``key_id`` (no secret, no hash), or None."""
        doc = self._store.get(COLLECTION, key_id) if parse_id(key_id) else None
        return None if doc is None else ApiKey(**_public(doc.data))

    def check(self, key: str) -> ApiKey | Refusal:
        """The key's record, or why it is refused. The secret is checked before revoked or
        expired is told, so only the key's holder learns those."""
        key_id = parse_key(key)
        if key_id is None:
            return Refusal.malformed
        doc = self._store.get(COLLECTION, key_id)
        if doc is None:
            # unknown ids cost a hash too, so timing does not tell them from known ones
            self._decoy = self._decoy or hash_key(new_key()[1], self.params)
            verify_key(key, self._decoy)
            return Refusal.unknown
        if not verify_key(key, KeyHash(**doc.data["hash"])):
            return Refusal.mismatch
        info = ApiKey(**_public(doc.data))
        now = self.clock()
        state = info.state(now)
        if state != "active":
            return Refusal(state)
        if info.last_used_at is None or now - info.last_used_at >= LAST_USED_EVERY_S:
            info = info.model_copy(update={"last_used_at": now})
            with contextlib.suppress(Conflict):  # another resolve wrote it just now
                self._store.put(COLLECTION, key_id, {**doc.data, "last_used_at": now},
                               expected_version=doc.version)
        return info

    def _issue(self, by: str, user: str, roles: dict[str, Role], expires_in_s: float | None,
               description: str, marker: bool = False) -> IssuedKey:
        key_id, key = new_key()
        now = self.clock()
        info = ApiKey(key_id=key_id, user=user, roles=roles, created_at=now, created_by=by,
                      expires_at=None if expires_in_s is None else now + expires_in_s,
                      description=description)
        ops = [Put(collection=COLLECTION, key=key_id, expected_version=0,
                   data={**info.stored(), "hash": hash_key(key, self.params).model_dump()})]
        if marker:
            ops.append(Put(collection=_MARKER[0], key=_MARKER[1], expected_version=0,
                           data={"key_id": key_id}))
        self._store.apply(ops, _audit(by, "keys.create", info))
        return IssuedKey(info=info, key=SecretStr(key))


def parse_id(key_id: str) -> bool:
    """True when ``key_id`` is shaped like a public key id."""
    return isinstance(key_id, str) and KEY_ID_PATTERN.fullmatch(key_id) is not None


def _roles(roles: dict[str, str]) -> dict[str, Role]:
    if not roles:
        raise InvalidInput("roles: give at least one project=role", field="roles")
    out = {}
    for target, name in roles.items():
        if target != ALL_PROJECTS:
            try:
                check_project_name(target)
            except ValueError as exc:
                raise InvalidInput(f"roles: {exc}", field="roles") from None
        if name not in Role.__members__:
            raise InvalidInput(f"roles.{target}: {name!r} is not a role; use one of "
                               f"{', '.join(Role.__members__)}", field=f"roles.{target}")
        out[target] = Role[name]
    return out


def _public(data: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in data.items() if k != "hash"}


def _audit(by: str, action: str, key: ApiKey) -> AuditEntry:
    projects = sorted(key.roles)
    return AuditEntry(user=by, project=projects[0] if len(projects) == 1 else ALL_PROJECTS,
                      action=action, target=f"{COLLECTION}/{key.key_id}",
                      after={"user": key.user, "roles": key.stored()["roles"],
                             "expires_at": key.expires_at, "revoked_at": key.revoked_at})
