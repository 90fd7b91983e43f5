"""JSON log lines (structlog) with the execution, workflow, tenant and trace on every line.

``configure_logging(process, level)`` routes the standard library's ``logging`` through
structlog's ``ProcessorFormatter``, so the ``log = logging.getLogger(__name__)`` lines of
every module come out as JSON too; ``structlog.get_logger()`` works as well. Every line
carries ``execution_id``, ``workflow_id``, ``tenant`` and ``trace_id`` (``null`` when the
line is not about one execution).

The execution context is one ``ContextVar`` holding a tuple (``set_execution`` /
``reset_execution``, or the ``execution`` context manager): a set and a reset per record
on the hot path, nothing else. ``asyncio.create_task`` copies it into the task it starts.
Other keys can be bound with ``structlog.contextvars.bind_contextvars``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any, TextIO

import structlog


class ExecutionContext:
    """What a log line says about the execution at hand (and, for the roles' hooks, the
    record's trace hop). One object per record: ``hooks.describe`` fills it in place."""

    __slots__ = ("execution_id", "hop", "tenant", "token", "trace_id", "workflow_id")

    def __init__(self, execution_id: str | None = None, workflow_id: str | None = None,
                 tenant: str | None = None, trace_id: str | None = None,
                 hop: Any = None) -> None:
        self.execution_id = execution_id
        self.workflow_id = workflow_id
        self.tenant = tenant
        self.trace_id = trace_id
        self.hop = hop
        self.token: Token[ExecutionContext] | None = None

    def as_tuple(self) -> tuple[str | None, str | None, str | None, str | None]:
        return (self.execution_id, self.workflow_id, self.tenant, self.trace_id)


_EMPTY = ExecutionContext()
_CONTEXT: ContextVar[ExecutionContext] = ContextVar("flowlog_execution", default=_EMPTY)


def set_execution(execution_id: str | None, workflow_id: str | None = None,
                  tenant: str | None = None, trace_id: str | None = None
                  ) -> Token[ExecutionContext]:
    """Make the following log lines (and tasks started from here) about this execution."""
    return _CONTEXT.set(ExecutionContext(execution_id, workflow_id, tenant, trace_id))


def reset_execution(token: Token[ExecutionContext]) -> None:
    _CONTEXT.reset(token)


def current_execution() -> ExecutionContext:
    return _CONTEXT.get()


def enter_context(ctx: ExecutionContext) -> ExecutionContext:
    """Make ``ctx`` current (one ContextVar set); ``leave_context(ctx)`` restores."""
    ctx.token = _CONTEXT.set(ctx)
    return ctx


def leave_context(ctx: ExecutionContext) -> None:
    if ctx.token is not None:
        _CONTEXT.reset(ctx.token)
        ctx.token = None


@contextmanager
def execution(execution_id: str | None, workflow_id: str | None = None,
              tenant: str | None = None, trace_id: str | None = None
              ) -> Iterator[ExecutionContext]:
    """Log lines inside the block are about this execution."""
    token = set_execution(execution_id, workflow_id, tenant, trace_id)
    try:
        yield _CONTEXT.get()
    finally:
        _CONTEXT.reset(token)


def _add_execution(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ctx = _CONTEXT.get()
    trace_id = ctx.trace_id
    if trace_id is None:
        from flowlog.observability.tracing import current_trace_id

        trace_id = current_trace_id()
    event.setdefault("execution_id", ctx.execution_id)
    event.setdefault("workflow_id", ctx.workflow_id)
    event.setdefault("tenant", ctx.tenant)
    event.setdefault("trace_id", trace_id)
    return event


class _LastError(logging.Handler):
    """Remembers the newest ERROR line (for /readyz and `flowlog status`)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.last: dict[str, Any] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)
        if record.exc_info and record.exc_info[1] is not None:
            message = f"{message}: {record.exc_info[1]!r}"
        self.last = {"at": time.time(), "logger": record.name, "message": message[:500]}


LAST_ERROR = _LastError()


def configure_logging(process: str, level: str | int = "INFO", *, json: bool = True,
                      stream: TextIO | None = None) -> None:
    """Route every log line of this process to ``stream`` (stderr) as one JSON object.

    Keys: ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the message),
    ``process``, ``execution_id``, ``workflow_id``, ``tenant``, ``trace_id``, plus
    ``exception`` when there is one. ``json=False`` renders for a terminal instead.
    Calling it again replaces the handlers (tests do).
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_execution,
        _add_process(process),
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.addHandler(LAST_ERROR)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # the Kafka client's INFO lines (group joins, fetch sessions) drown the engine's own
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def _add_process(process: str) -> Any:
    def add(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event.setdefault("process", process)
        return event

    return add


__all__ = [
    "LAST_ERROR",
    "ExecutionContext",
    "configure_logging",
    "current_execution",
    "enter_context",
    "execution",
    "leave_context",
    "reset_execution",
    "set_execution",
]
