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

from contextvars import ContextVar, Token
from typing import Any

from flowlog.observability import logs, tracing
from flowlog.observability.metrics import OPEN_BREAKERS

_HOP: ContextVar[tracing.Hop | None] = ContextVar("flowlog_hop", default=None)


class Scope:
    __slots__ = ("hop", "hop_token", "log_token")

    def __init__(self, hop: tracing.Hop, hop_token: Token[tracing.Hop | None],
                 log_token: Token[logs.ExecutionContext]) -> None:
        self.hop = hop
        self.hop_token = hop_token
        self.log_token = log_token


def enter(name: str, msg: Any, *, root: bool = False,
          attributes: dict[str, str | int] | None = None) -> Scope:
    """Begin one input record's hop; ``msg`` is an aiokafka record (key = execution id)."""
    key = msg.key
    execution_id = key.decode(errors="replace") if key else None
    hop = tracing.begin(name, msg.headers, attributes, execution_id=execution_id, root=root)
    return Scope(hop, _HOP.set(hop), logs.set_execution(execution_id, None, None, hop.trace_id))


def describe(workflow_id: str | None, tenant: str | None = None) -> None:
    """Add the decoded workflow and tenant to the current log context."""
    ctx = logs.current_execution()
    logs.set_execution(ctx.execution_id, workflow_id, tenant, ctx.trace_id)


def leave(scope: Scope, *, end: bool = True) -> None:
    """Restore the context ``enter`` found; end the hop unless a task took it over."""
    if end:
        scope.hop.end()
    _HOP.reset(scope.hop_token)
    logs.reset_execution(scope.log_token)


def headers() -> list[tuple[str, bytes]] | None:
    """Trace headers for what the current hop produces (None outside a hop)."""
    hop = _HOP.get()
    return hop.headers or None if hop is not None else None


def error(exc: BaseException) -> None:
    """Mark the current hop's span failed."""
    hop = _HOP.get()
    if hop is not None:
        hop.error(exc)


def end_current() -> None:
    """End the hop of this task's context (a task that inherited it from ``enter``)."""
    hop = _HOP.get()
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
