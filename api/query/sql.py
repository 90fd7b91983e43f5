"""SQL building blocks of the query API (pure: no I/O).

* ``Query``: a WHERE clause with ``$n`` parameters, built filter by filter;
* ``Scope``: the caller's tenants, always written INTO the SQL (never filtered after);
* keyset cursors: the last row's sort value and id, opaque to clients (base64url JSON).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from fastapi import HTTPException
from flowlog.api.auth.model import ALL_TENANTS, Principal


@dataclass(frozen=True, slots=True)
class Scope:
    """The tenants a caller may read; ``None``: every tenant (an all-tenants admin)."""

    tenants: tuple[str, ...] | None

    @classmethod
    def of(cls, principal: Principal, tenant: str | None = None) -> Scope:
        """The principal's tenants, narrowed to ``tenant`` when the request names one (the
        auth dependency has already refused a tenant the principal may not read)."""
        if tenant is not None:
            if principal.tenant not in (ALL_TENANTS, tenant):
                raise HTTPException(403, f"{principal.label} may not read tenant {tenant!r}")
            return cls((tenant,))
        return cls(None if principal.tenant == ALL_TENANTS else (principal.tenant,))


@dataclass
class Query:
    """Conditions joined with AND and their parameters, numbered in order."""

    args: list[Any] = field(default_factory=list)
    conds: list[str] = field(default_factory=list)

    def arg(self, value: Any) -> str:
        self.args.append(value)
        return f"${len(self.args)}"

    def where(self, cond: str, *values: Any) -> Query:
        """``cond`` with ``{}`` for each value, e.g. ``where("status = ANY({})", [...])``."""
        self.conds.append(cond.format(*(self.arg(v) for v in values)))
        return self

    def scope(self, scope: Scope, column: str = "tenant") -> Query:
        if scope.tenants is not None:
            if len(scope.tenants) == 1:  # equality: the planner uses (tenant, ...) indexes
                self.where(f"{column} = {{}}", scope.tenants[0])
            else:
                self.where(f"{column} = ANY({{}}::text[])", list(scope.tenants))
        return self

    def sql(self) -> str:
        return (" WHERE " + " AND ".join(self.conds)) if self.conds else ""


def visible_workflow(q: Query, scope: Scope, alias: str = "w") -> None:
    """A workflow is visible to a tenant that has an execution, a webhook or a schedule of
    it (the read model keeps no tenant on a workflow; see docs/api.md)."""
    if scope.tenants is None:
        return
    t = q.arg(list(scope.tenants))
    q.conds.append(
        f"(EXISTS (SELECT 1 FROM workflow_executions x WHERE x.workflow_id = "
        f"{alias}.workflow_id AND x.tenant = ANY({t}::text[])) OR EXISTS (SELECT 1 FROM "
        f"webhook_registrations h WHERE h.workflow_id = {alias}.workflow_id AND h.tenant = "
        f"ANY({t}::text[])) OR EXISTS (SELECT 1 FROM schedules s WHERE s.workflow_id = "
        f"{alias}.workflow_id AND s.tenant = ANY({t}::text[])))")


def encode_cursor(*values: Any) -> str:
    raw = orjson.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, kinds: tuple[type, ...]) -> list[Any]:
    """The values of a cursor made by ``encode_cursor``; 422 naming the problem when it is
    not one (or not of this listing)."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = orjson.loads(raw)
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for kind, value in zip(kinds, values, strict=True):
            if kind is datetime:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError("naive time")
                out.append(parsed)
            elif kind is int:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError("not an int")
                out.append(value)
            else:
                if not isinstance(value, str):
                    raise ValueError("not a string")
                out.append(value)
        return out
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise HTTPException(422, f"cursor {text[:40]!r} is not a cursor of this listing: pass "
                                 "the next_cursor of the previous page unchanged, or none "
                                 "for the first page") from None
