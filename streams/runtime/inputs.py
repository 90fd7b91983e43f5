"""One decoded input made ready for `decide`: the glue the orchestrator and the processor share.

Both deciding roles turn a decoded record into the same three things, by the same rules
(`policy`): the input's terms, the definition they name and the domain input. The I/O in
between (the registry catching up with a workflow defined a moment ago) is why this is
not in the pure `policy` module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from flowlog.aggregates import records
from flowlog.aggregates.definition import CompiledDefinition
from flowlog.aggregates.execution import ExecutionState
from flowlog.aggregates.execution import inputs as dinp
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.ports import Definitions, Registry

#: How long a trigger of an unknown workflow waits for the registry to catch up (seconds).
CATCH_UP_WITHIN_S = 2.0


class ResolvedInput(NamedTuple):
    """What `decide` is given besides the state and the clock."""

    terms: policy.InputTerms
    definition: CompiledDefinition | None  # None: the terms name none, or it is unknown
    input: dinp.Input


async def resolve_input(name: str, record: Mapping[str, Any], state: ExecutionState, *,
                        registry: Registry, follower: Definitions,
                        tenant_limit: int) -> ResolvedInput:
    """The terms, definition and domain input of the decoded input ``name``/``record``,
    whose execution's state is ``state`` (a fresh one when unknown).

    A trigger of a workflow ``registry`` does not know first makes ``follower`` catch up
    (bounded; it may have been defined a moment ago). ``tenant_limit`` is
    `Settings.tenant_max_executions`. Raises what `policy.input_terms` and
    `records.record_to_input` raise on a bad record (`records.WireError`, a missing field):
    the caller quarantines the input.
    """
    if policy.needs_catch_up(name, record, registry.workflows):
        await follower.catch_up(within=CATCH_UP_WITHIN_S)  # defined a moment ago?
    terms = policy.input_terms(name, record, state,
                               registry.workflows.get(record.get("workflow_id", "")),
                               tenant_limit)
    definition = registry.definition(*terms.definition) if terms.definition is not None else None
    return ResolvedInput(terms, definition, records.record_to_input(name, record, terms.version))
