"""Principals, roles and the errors of authentication (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

ROLES = ("viewer", "operator", "admin")
#: A tenant name that grants its role in every tenant (bootstrap administrators).
ALL_TENANTS = "*"
#: A scope that allows whatever the role allows.
ANY_SCOPE = "*"
#: Scopes an API key may be restricted to (``*``: all its role allows).
SCOPES = (
    "workflows:read", "workflows:write", "executions:read", "executions:write",
    "webhooks:manage", "schedules:read", "schedules:write", ANY_SCOPE,
)  # fmt: skip


class Role(IntEnum):
    """Roles are ordered: each may do what the ones below may."""

    viewer = 1
    operator = 2
    admin = 3

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value]
        except KeyError:
            raise ValueError(f"role {value!r} is unknown: use one of {', '.join(ROLES)}") from None


class AuthError(Exception):
    """Authentication or authorisation refused; ``status`` is 401, 403 or 429."""

    status = 401

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class Unauthenticated(AuthError):
    status = 401


class Forbidden(AuthError):
    status = 403


class RateLimited(AuthError):
    status = 429


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user (JWT) or an API key, in one tenant, with one role."""

    subject: str  # user id or key id
    kind: str  # "user" or "key"
    tenant: str
    role: Role
    scopes: frozenset[str] = field(default_factory=lambda: frozenset({ANY_SCOPE}))
    name: str = ""

    @property
    def label(self) -> str:
        """How audit records name this principal, e.g. ``user:alice`` or ``key:3f2a…``."""
        return f"{self.kind}:{self.name or self.subject}"

    def can_act_in(self, tenant: str) -> bool:
        return self.tenant in (tenant, ALL_TENANTS)

    def require(self, role: Role | str, scope: str | None = None,
                tenant: str | None = None) -> None:
        """Raise ``Forbidden`` unless this principal has ``role`` (or higher), ``scope``
        and may act in ``tenant``."""
        need = Role.parse(role) if isinstance(role, str) else role
        if self.role < need:
            raise Forbidden(f"{self.label} has role {self.role.name} in tenant {self.tenant}; "
                            f"this needs {need.name} or higher")
        if scope and ANY_SCOPE not in self.scopes and scope not in self.scopes:
            raise Forbidden(f"{self.label} lacks scope {scope!r} (has "
                            f"{', '.join(sorted(self.scopes))}); create a key with it")
        if tenant is not None and not self.can_act_in(tenant):
            raise Forbidden(f"{self.label} belongs to tenant {self.tenant!r}, "
                            f"not {tenant!r}")
