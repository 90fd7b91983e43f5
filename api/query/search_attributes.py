"""Search attributes in the query API (read-only): the `attr.NAME` filters of
GET /api/executions and GET /api/search-attributes (the declared attributes with their
backfill progress). Declaring one is an operator action (`flowlog search-attributes add`),
never an API write.

Filters: ``attr.NAME=value`` (equality, any type) and, for int, double and datetime
attributes, ``attr.NAME>=v``, ``attr.NAME<=v``, ``attr.NAME>v``, ``attr.NAME<v`` (a query
string splits ``attr.cost>=0.5`` into the key ``attr.cost>`` and the value ``0.5``; ``>`` and
``<`` without ``=`` arrive as a key without value). Each becomes ``execution_id IN (SELECT
… FROM search_attribute_values WHERE attribute = $a AND v_<type> <op> $b)``: an index range
on ``(attribute, v_<type>, execution_id)``; the caller's tenant scope stays on the outer
query.
"""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from flowlog.api.auth.model import Principal
from flowlog.api.query.sql import Query as Q
from flowlog.api.query.sql import Scope
from flowlog.projections import search_attributes as sa
from pydantic import BaseModel, Field

_OPS = {"=": "=", ">=": ">=", "<=": "<=", ">": ">", "<": "<"}
RANGED = frozenset({"int", "double", "datetime"})
MAX_FILTERS = 10

FILTER_DOC = (
    "Search attributes (declared with `flowlog search-attributes add`, listed at GET "
    "/api/search-attributes): `attr.NAME=value`; for int, double and datetime attributes "
    "also `attr.NAME>=v`, `attr.NAME<=v`, `attr.NAME>v`, `attr.NAME<v`. Several are ANDed. "
    "An unknown attribute or a value not of its type answers 400 naming it. While an "
    "attribute is backfilling, executions not yet evaluated do not match.")


class SearchAttribute(BaseModel):
    name: str
    type: str = Field(description="keyword, int, double, bool or datetime")
    expression: str = Field(description="CEL over `events` and `execution`")
    state: str = Field(description="backfilling, ready or failed")
    done: int = Field(description="Executions evaluated (in the caller's tenants)")
    total: int = Field(description="Executions to evaluate (in the caller's tenants)")
    errors: int = Field(description="Executions whose evaluation failed (no value)")
    waiting: int = Field(description="Executions waiting for the audit store to catch up "
                                     "(all tenants; 0 for a tenant caller)")
    last_error: str | None = None
    declared_at: datetime
    updated_at: datetime


def _split(key: str, value: str) -> tuple[str, str, str] | None:
    """(name, op, text) of one query item, or None when it is not a filter."""
    if not key.startswith("attr."):
        return None
    if key.endswith((">", "<")):  # attr.cost>=0.5 → key "attr.cost>", value "0.5"
        return key[5:-1], key[-1] + "=", value
    m = re.match(r"^attr\.([^<>=]*)(>|<)(.+)$", key)
    if m and value == "":  # attr.cost>0.5 → key "attr.cost>0.5", no value
        return m.group(1), m.group(2), m.group(3)
    return key[5:], "=", value


async def add_filters(q: Q, request: Request, pool: Any) -> None:
    """Add the request's ``attr.*`` filters to ``q``; 400 naming the attribute and the fix."""
    wanted = [f for f in (_split(k, v) for k, v in request.query_params.multi_items()) if f]
    if not wanted:
        return
    if len(wanted) > MAX_FILTERS:
        raise HTTPException(400, f"{len(wanted)} search attribute filters: at most "
                                 f"{MAX_FILTERS}")
    declared = {r["name"]: r["type"] for r in await pool.fetch(
        "SELECT name, type FROM search_attributes WHERE state <> 'failed'")}
    for name, op, text in wanted:
        type_ = declared.get(name)
        if type_ is None:
            known = ", ".join(sorted(declared)) or "none"
            raise HTTPException(400, f"attr.{name[:60]}: no search attribute {name[:60]!r} is "
                                     f"declared (declared: {known}; GET /api/search-attributes"
                                     " lists them; an operator declares one with `flowlog "
                                     "search-attributes add`)")
        if op != "=" and type_ not in RANGED:
            raise HTTPException(400, f"attr.{name}{op}{text[:40]}: {name!r} is {type_}; ranges "
                                     "apply to int, double and datetime attributes: use "
                                     f"attr.{name}=value")
        try:
            value = sa.parse_value(type_, name, text)
        except sa.SearchAttributeError as exc:
            raise HTTPException(400, str(exc)) from None
        column = sa.COLUMN[type_]
        q.where("execution_id IN (SELECT v.execution_id FROM search_attribute_values v "
                f"WHERE v.attribute = {{}} AND v.{column} {_OPS[op]} {{}})", name, value)


#: Per tenant: the tenant's executions, each looked up in the values by primary key (a
#: correlated subquery the planner cannot turn into a hash join over every value).
_EVALUATED = ("(SELECT v.error IS NULL FROM search_attribute_values v WHERE v.attribute = "
              "a.name AND v.execution_id = x.execution_id)")
TENANT_PROGRESS = (
    "SELECT a.name, a.type, a.expression, a.state, a.last_error, a.declared_at, "
    "a.updated_at, 0 AS waiting, p.total, p.done, p.errors FROM search_attributes a, "
    "LATERAL (SELECT count(*) AS total, count(ok) AS done, count(*) FILTER (WHERE NOT ok) "
    "AS errors FROM (SELECT " + _EVALUATED + " AS ok FROM workflow_executions x "
    "WHERE {scope}) e) p ORDER BY a.name")
ALL_PROGRESS = (
    "SELECT a.name, a.type, a.expression, a.state, a.last_error, a.declared_at, "
    "a.updated_at, a.waiting, a.total, a.done, (SELECT count(*) FROM search_attribute_values v "
    "WHERE v.attribute = a.name AND v.error IS NOT NULL) AS errors "
    "FROM search_attributes a ORDER BY a.name")


def routes(api: APIRouter, services: Callable[[], Any], read: Callable[..., Any]) -> None:
    """Add GET /api/search-attributes to the API router."""
    ExP = Annotated[Principal, Depends(read)]

    @api.get("/search-attributes", response_model=list[SearchAttribute],
             tags=["executions"], summary="Declared search attributes with their backfill "
             "progress (filters of GET /api/executions: attr.NAME=value)")
    async def search_attributes(
        principal: ExP,
        tenant: Annotated[str | None, Query(max_length=200, description="Progress in this "
                                            "tenant only (one of the caller's).")] = None,
    ) -> list[dict[str, Any]]:
        scope = Scope.of(principal, tenant)
        if scope.tenants is None:
            rows = await services().pool.fetch(ALL_PROGRESS)
        else:
            q = Q().scope(scope, "x.tenant")
            rows = await services().pool.fetch(TENANT_PROGRESS.format(scope=q.conds[0]),
                                               *q.args)
        return [dict(r) for r in rows]
