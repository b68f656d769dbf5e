"""Who is calling: a user with a role per project.

Every control-plane method takes a :class:`Caller` and checks it against the
project it touches. The embedded default is the local admin.
"""

from __future__ import annotations

import enum
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlray.errors import PermissionDenied

__all__ = ["PROJECT_PATTERN", "Caller", "Role", "check_project_name"]

PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ALL_PROJECTS = "*"


class Role(enum.IntEnum):
    """Roles in increasing order of power; each includes what the ones below it may do.

    ``predict`` is the least: a service that only calls models (inference) and reads
    nothing else. A ``viewer`` reads everything in the project and may also call models,
    so it sits above ``predict``.
    """

    predict = 1
    viewer = 2
    editor = 3
    admin = 4


def check_project_name(project: str) -> str:
    """Return ``project`` if it is a valid project name, else raise ``ValueError``."""
    if not PROJECT_PATTERN.match(project):
        raise ValueError(
            f"invalid project name {project!r}: use 1-63 lowercase letters, digits, '_' or '-'"
        )
    return project


class Caller(BaseModel):
    """An authenticated identity: a user and its role per project (``*`` = every project)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = Field(min_length=1, max_length=128, description="User or service name.")
    roles: dict[str, Role] = Field(
        default_factory=dict, description="Role per project; the key '*' covers every project."
    )

    @field_validator("roles")
    @classmethod
    def _check_projects(cls, roles: dict[str, Role]) -> dict[str, Role]:
        for project in roles:
            if project != ALL_PROJECTS:
                check_project_name(project)
        return roles

    @classmethod
    def local_admin(cls, user: str = "local") -> Caller:
        """The embedded default: admin of every project."""
        return cls(user=user, roles={ALL_PROJECTS: Role.admin})

    def role_in(self, project: str) -> Role | None:
        """The caller's role in ``project``, or None if it has none."""
        return self.roles.get(project) or self.roles.get(ALL_PROJECTS)

    def require(self, project: str, role: Role) -> None:
        """Raise :class:`PermissionDenied` unless the caller holds ``role`` (or more) there."""
        held = self.role_in(project)
        if held is None or held < role:
            have = held.name if held else "no role"
            raise PermissionDenied(
                f"user {self.user!r} has {have} in project {project!r}; {role.name} is required"
            )
