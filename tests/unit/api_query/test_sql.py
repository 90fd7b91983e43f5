"""Pure parts of the query API: tenant scope, the WHERE builder, keyset cursors, the
timeline of an execution."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import HTTPException
from flowlog.api.auth.model import Principal, Role
from flowlog.api.query.app import timeline
from flowlog.api.query.sql import Query, Scope, decode_cursor, encode_cursor, visible_workflow


def principal(tenant: str) -> Principal:
    return Principal("k1", "key", tenant, Role.viewer)


def test_scope_of_a_tenant_and_of_an_all_tenants_admin() -> None:
    assert Scope.of(principal("acme")).tenants == ("acme",)
    assert Scope.of(principal("*")).tenants is None
    assert Scope.of(principal("*"), "zeta").tenants == ("zeta",)
    assert Scope.of(principal("acme"), "acme").tenants == ("acme",)
    with pytest.raises(HTTPException) as err:
        Scope.of(principal("acme"), "zeta")
    assert err.value.status_code == 403


def test_query_numbers_parameters_and_writes_the_scope() -> None:
    q = Query().scope(Scope(("acme",))).where("workflow_id = {}", "wf").where(
        "(created_at, execution_id) < ({}, {})", 1, "x")
    assert q.sql() == (" WHERE tenant = $1 AND workflow_id = $2 AND "
                       "(created_at, execution_id) < ($3, $4)")
    assert q.args == ["acme", "wf", 1, "x"]
    assert Query().scope(Scope(None)).sql() == ""
    assert Query().scope(Scope(("a", "b"))).sql() == " WHERE tenant = ANY($1::text[])"
    v = Query()
    visible_workflow(v, Scope(("acme",)))
    assert "x.tenant = ANY($1::text[])" in v.sql() and v.args == [["acme"]]
    w = Query()
    visible_workflow(w, Scope(None))
    assert w.sql() == ""


def test_cursor_round_trip_and_refusals() -> None:
    at = datetime(2025, 1, 6, 9, tzinfo=UTC)
    text = encode_cursor(at, "x-1", 3)
    assert decode_cursor(text, (datetime, str, int)) == [at, "x-1", 3]
    for bad, kinds in ((text, (datetime, str)), ("!!", (str,)), (encode_cursor("no"), (int,)),
                       (encode_cursor("2025-01-06T09:00:00"), (datetime,)),
                       (encode_cursor(True), (int,))):
        with pytest.raises(HTTPException) as err:
            decode_cursor(bad, kinds)
        assert err.value.status_code == 422 and "cursor" in str(err.value.detail)


def test_timeline_has_every_defined_node() -> None:
    t = datetime(2025, 1, 6, tzinfo=UTC)
    runs = [{"node_id": "a", "attempt": 1, "node_type": "tool", "status": "failed",
             "started_at": t, "scheduled_at": t, "created_at": t, "finished_at": t,
             "duration_ms": 0},
            {"node_id": "a", "attempt": 2, "node_type": "tool", "status": "succeeded",
             "started_at": None, "scheduled_at": t, "created_at": t, "finished_at": None,
             "duration_ms": None}]
    bars = timeline(["a", "b", "c"], runs, {"b": ["skipped", 0]})
    assert [(b["node_id"], b["attempt"], b["status"]) for b in bars] == [
        ("a", 1, "failed"), ("a", 2, "succeeded"), ("b", 0, "skipped"), ("c", 0, "not_run")]
    assert bars[1]["start"] == t and bars[2]["start"] is None
