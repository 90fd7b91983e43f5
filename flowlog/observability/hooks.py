"""What the engine's roles call per record: a few cheap lines at each role's edges.

    scope = hooks.enter("orchestrator decide", msg, root=msg.topic == triggers)
    try:
        ...                                         # decide; log lines carry the context
        await producer.send(..., headers=hooks.headers())
    finally:
        hooks.leave(scope)

``enter`` begins the record's trace hop (``tracing.begin``: the input's ``traceparent``,
or the execution's own trace when it has none) and sets the log context from the record
key (the execution id). ``describe`` adds the workflow and tenant once decoded. A task
started under ``enter`` (``asyncio.create_task``) inherits both; it ends the hop itself
with ``end_current`` when ``leave(scope, end=False)`` handed it over.
"""

from __future__ import annotations

from typing import Any

from flowlog.observability import logs, tracing
from flowlog.observability.metrics import OPEN_BREAKERS

Scope = logs.ExecutionContext


def enter(name: str, msg: Any, *, root: bool = False,
          attributes: dict[str, str | int] | None = None) -> Scope:
    """Begin one input record's hop; ``msg`` is an aiokafka record (key = execution id)."""
    key = msg.key
    execution_id = key.decode(errors="replace") if key else None
    hop = tracing.begin(name, msg.headers, attributes, execution_id=execution_id, root=root)
    return logs.enter_context(Scope(execution_id, None, None, hop.trace_id, hop))


def describe(workflow_id: str | None, tenant: str | None = None) -> None:
    """Add the decoded workflow and tenant to the current record's log context."""
    ctx = logs.current_execution()
    if ctx.hop is not None:  # a record's own context (never the shared empty one)
        ctx.workflow_id = workflow_id
        ctx.tenant = tenant


def leave(scope: Scope, *, end: bool = True) -> None:
    """Restore the context ``enter`` found; end the hop unless a task took it over."""
    if end:
        scope.hop.end()
    logs.leave_context(scope)


def headers() -> list[tuple[str, bytes]] | None:
    """Trace headers for what the current hop produces (None outside a hop)."""
    hop = logs.current_execution().hop
    return hop.headers or None if hop is not None else None


def error(exc: BaseException) -> None:
    """Mark the current hop's span failed."""
    hop = logs.current_execution().hop
    if hop is not None:
        hop.error(exc)


def end_current() -> None:
    """End the hop of this task's context (a task that inherited it from ``enter``)."""
    hop = logs.current_execution().hop
    if hop is not None:
        hop.end()


def headers_for(execution_id: str) -> list[tuple[str, bytes]] | None:
    """Trace headers of an execution's own trace, for records made outside any input's
    hop (a timer fired by the clock)."""
    if tracing._STATE.tracer is None:
        return None
    return [(tracing.TRACEPARENT, tracing.execution_traceparent(execution_id))]


def watch_breakers(runner: Any) -> None:
    """``flowlog_open_breakers`` reads the runner's breakers when scraped."""
    breakers = getattr(getattr(getattr(runner, "limits", None), "breakers", None),
                       "_by_target", None)
    if isinstance(breakers, dict):
        OPEN_BREAKERS.set_function(
            lambda: float(sum(1 for b in list(breakers.values()) if b.state != "closed")))
