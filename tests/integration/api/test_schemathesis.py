"""schemathesis against the served OpenAPI: generated requests to every operation (but the
live streams, which never end by design; tests/integration/api/test_live.py covers them)
find no 5xx and no answer that breaks the documented schema."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings

from tests.integration.api.conftest import World

EXAMPLES = 40
#: What "no 5xx and no schema violation" means: these checks, on every answer.
CHECKS = [schemathesis.checks.not_a_server_error,
          schemathesis.checks.response_schema_conformance,
          schemathesis.checks.status_code_conformance,
          schemathesis.checks.content_type_conformance]


def test_no_5xx_no_schema_violation(world: World) -> None:
    schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json")
    headers = {"X-API-Key": world.keys["acme"]}
    failures: list[str] = []
    tested = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/api/live/"):
            continue
        tested.append(op.label)

        @given(case=op.as_strategy())
        @hsettings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                   suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # one report for every operation
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    assert len(tested) >= 19
    assert not failures, "\n\n".join(failures)
