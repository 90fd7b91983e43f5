"""Recorded histories of every example workflow, for the audit tests.

The recorded fixtures (`tests/fixtures/histories/*.json`, four examples) and the scripted
runs of every example (`tests/support/scenarios.py`, seven examples, nine
histories) — the latter recorded here in memory with the definition they ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from flowlog.aggregates.definition import compile_definition, load_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.execution.events import ExecutionEvent, event_from_dict
from flowlog.aggregates.ids import execution_event_id

from tests.support.scenarios import SCENARIOS

REPO = Path(__file__).resolve().parents[2]

# Histories whose decisions are known not to be reproducible. examples/fan-out-fan-in.yaml
# was one (its `report.best` took the first price of a CEL map, whose iteration order
# differs between processes: found by `replay verify`); the example no longer iterates maps.
NONDETERMINISTIC: frozenset[str] = frozenset()


@dataclass(frozen=True)
class History:
    name: str
    definition: CompiledDefinition
    events: list[ExecutionEvent]


def _fixtures() -> list[History]:
    out = []
    for path in sorted((REPO / "tests" / "fixtures" / "histories").glob("*.json")):
        doc = json.loads(path.read_text())
        d = compile_definition(load_definition(REPO / doc["definition"]))
        out.append(History(f"fixture:{path.stem}", d,
                           [event_from_dict(e) for e in doc["events"]]))
    return out


def _scenarios() -> list[History]:
    out = []
    for name, make in SCENARIOS.items():
        run = make()
        out.append(History(f"scenario:{name}", run.d, list(run.events)))
    return out


def all_histories() -> list[History]:
    return _fixtures() + _scenarios()


HISTORIES = all_histories()
IDS = [h.name for h in HISTORIES]
# Replays re-decide with today's code and today's examples/*.yaml: the scripted runs are
# recorded with both (a fixture file goes stale while someone changes an example, which
# tests/unit/aggregates/test_histories.py reports; `replay verify` would too).
REPLAYABLE = [h for h in HISTORIES if h.name.startswith("scenario:")]
REPLAYABLE_IDS = [h.name for h in REPLAYABLE]
EXAMPLES_COVERED = {h.definition.workflow_id for h in HISTORIES}


def example(name: str) -> CompiledDefinition:
    return compile_definition(load_definition(REPO / "examples" / f"{name}.yaml"))


def history(name: str) -> History:
    return next(h for h in HISTORIES if h.name == name)


def renamed(events: list[ExecutionEvent], execution_id: str) -> list[ExecutionEvent]:
    """The same history under another execution id (event ids and task keys derived
    again)."""
    old = events[0].execution_id
    out = []
    for e in events:
        changes: dict[str, object] = {"execution_id": execution_id,
                                      "event_id": execution_event_id(execution_id, e.seq)}
        task_key = getattr(e, "task_key", None)
        if isinstance(task_key, str) and task_key.startswith(old + ":"):
            changes["task_key"] = execution_id + task_key[len(old):]
        out.append(replace(e, **changes))  # type: ignore[arg-type]
    return out
