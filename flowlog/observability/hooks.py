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

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flowlog.observability import logs, metrics, tracing
from flowlog.observability.metrics import OPEN_BREAKERS

#: Count on the hot path? ``start_process`` sets it from ``FLOWLOG_METRICS_ENABLED``
#: (off: the roles' metric calls return at once; the benchmark's "metrics off").
COUNTING = True

Scope = logs.ExecutionContext


def enter(name: str, msg: Any, *, root: bool = False,
          attributes: dict[str, str | int] | None = None) -> Scope:
    """Begin one input record's hop; ``msg`` is an aiokafka record (key = execution id)."""
    key = getattr(msg, "key", None)  # getattr: test doubles of records carry less
    execution_id = key.decode(errors="replace") if key else None
    hop = tracing.begin(name, getattr(msg, "headers", None), attributes,
                        execution_id=execution_id, root=root)
    return logs.enter_context(Scope(execution_id, None, None, hop.trace_id, hop))


def enter_execution(name: str, execution_id: str) -> Scope:
    """Begin a hop with no input record (a timer the processor fires from its own state):
    a span in the execution's own trace, and its log context."""
    hop = tracing.begin(name, None, None, execution_id=execution_id)
    return logs.enter_context(Scope(execution_id, None, None, hop.trace_id, hop))


def describe(workflow_id: str | None, tenant: str | None = None,
             event_type: str | None = None) -> None:
    """Add the decoded workflow and tenant to the current record's log context (and the
    input's type to its span's name, when the span is recorded)."""
    ctx = logs.current_execution()
    if ctx.hop is not None:  # a record's own context (never the shared empty one)
        ctx.workflow_id = workflow_id
        ctx.tenant = tenant
        span = ctx.hop.span
        if span is not None:
            if event_type:
                span.update_name(f"{span.name} {event_type}")
            if workflow_id:
                span.set_attribute("flowlog.workflow_id", workflow_id)


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


# --- projectors: one span per record applied ---------------------------------------------

#: (record, its hop) of one projector batch
Projected = list[tuple[Any, tracing.Hop]]


def project(projection: str, msgs: Iterable[Any]) -> Projected:
    """Begin the span of each record a projector is about to apply: ``projector <name>``, a
    child of the record's ``traceparent`` (the orchestrator's decision that wrote it), or of
    its execution's own trace when it carries none; attribute ``flowlog.execution_id``.

    The spans are not made current (a batch holds many executions); ``projected`` ends
    them when the batch's transaction is over. Unsampled or untraced: no SDK call.
    """
    name = f"projector {projection}"
    recording = tracing._STATE.recording  # no exporter: no span keeps attributes
    out: Projected = []
    for msg in msgs:
        key = getattr(msg, "key", None)
        execution_id = key.decode(errors="replace") if key else None
        hop = tracing.begin(name, getattr(msg, "headers", None), {
            "flowlog.execution_id": execution_id or "", "flowlog.projection": projection,
            "messaging.kafka.partition": msg.partition, "messaging.kafka.offset": msg.offset,
        } if recording else None, execution_id=execution_id)
        out.append((msg, hop))
    return out


def projected(hops: Projected, logger: logging.Logger, projection: str,
              error: BaseException | None = None) -> None:
    """End a batch's record spans (marked failed with ``error``: rolled back) and, at debug
    level, log one line per record bound to its execution and trace."""
    debug = logger.isEnabledFor(logging.DEBUG)
    for msg, hop in hops:
        if error is not None:
            hop.error(error)
        hop.end()
        if debug:
            key = getattr(msg, "key", None)
            with logs.execution(key.decode(errors="replace") if key else None,
                                trace_id=hop.trace_id):
                logger.debug("projector %s: %s %s[%s]@%s", projection,
                             "rolled back" if error is not None else "applied",
                             msg.topic, msg.partition, msg.offset)


def trace_parents(hops: Projected) -> dict[str, tracing.Headers]:
    """Execution id -> trace headers of its last record's span in a batch (what a step
    after the commit, the live status publish, continues)."""
    out: dict[str, tracing.Headers] = {}
    for msg, hop in hops:
        key = getattr(msg, "key", None)
        if key and hop.headers:
            out[key.decode(errors="replace")] = hop.headers
    return out


def watch_breakers(runner: Any) -> None:
    """``flowlog_open_breakers`` asks the runner's breakers when scraped (``open_count``:
    the process's own breakers, or, with the Redis store, the shared state of the targets
    this process has called)."""
    breakers = getattr(getattr(runner, "limits", None), "breakers", None)
    count = getattr(breakers, "open_count", None)
    if callable(count):
        OPEN_BREAKERS.set_function(lambda: float(count()))


# --- metrics the roles call (no-ops when counting is off) ----------------------------------

# The metric children come from dicts (``metrics.Children``): one dict hit per record, not
# a ``labels()`` call (~2 µs each); the series and their values are the same.

def records_in(role: str, topic: str, n: int) -> None:
    if COUNTING and n:
        metrics.EVENTS_IN_BY[role, topic].inc(n)


def records_out(role: str, topic: str, n: int = 1) -> None:
    if COUNTING and n:
        metrics.EVENTS_OUT_BY[role, topic].inc(n)


def quarantined(role: str) -> None:
    if COUNTING:
        metrics.QUARANTINED.labels(role).inc()


# the deciding roles' latency series are exported from start (a scrape before the first
# decision sees them at 0)
for _role in ("orchestrator", "processor"):
    _ = metrics.DECISION_LATENCY_BY[_role,]


def decided(events: list[object], workflow_id: str, input_timestamp_ms: int | None,
            role: str = "orchestrator") -> None:
    """One decision: its latency from the input's Kafka timestamp, its notable events."""
    if not COUNTING:
        return
    if input_timestamp_ms:
        metrics.DECISION_LATENCY_BY[role,].observe(
            max(0.0, time.time() - input_timestamp_ms / 1000))
    metrics.count_decision(events, workflow_id)


def task_done(node_type: str, status: str, seconds: float,
              model_calls: list[dict[str, object]] | None) -> None:
    """One node task run by the executor."""
    if not COUNTING:
        return
    metrics.TASK_LATENCY_BY[node_type, status].observe(seconds)
    if model_calls:
        metrics.count_model_calls(model_calls)


def watch_inflight(count: Callable[[], int]) -> None:
    """``flowlog_tasks_inflight`` reads ``count()`` when scraped."""
    metrics.TASKS_INFLIGHT.set_function(lambda: float(count()))
