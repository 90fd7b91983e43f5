"""OpenTelemetry traces with W3C trace context carried in Kafka record headers.

One trace follows an execution: the producer (SDK) injects ``traceparent`` into the
trigger's headers; each role reads it from its input record (``begin``), makes its span a
child of it, and writes the span's ``traceparent`` into the headers of what it produces
(``Hop.headers``). The trace id therefore stays the same from the trigger through every
decision, task and projection, and lands on every log line (``logs``).

Cost on the hot path, per record: when tracing is off, or the input's trace is not
sampled (flags ``00``), ``begin`` only forwards the input's ``traceparent`` bytes (no SDK
call, no span); a span is made only for sampled traces and for inputs that start a trace.
Sampling is ``ParentBased(TraceIdRatioBased(trace_sample_ratio))``: the decision at the
trigger holds for the whole execution. Spans are recorded only when an exporter exists
(``otlp_endpoint`` set, or ``use_memory_exporter`` in tests); otherwise trace ids are still
made and carried, nothing is recorded.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract as _extract
from opentelemetry.propagate import inject as _inject
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowlog.settings import Settings

log = logging.getLogger(__name__)
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Kafka headers as aiokafka and confluent-kafka take them.
Headers = list[tuple[str, bytes]]
_NO_HEADERS: Headers = []


class _State:
    provider: TracerProvider | None = None
    tracer: trace.Tracer | None = None
    recording = False
    ratio_bound = 0  # TraceIdRatioBased's bound on the trace id's low 64 bits


#: (trace id, span id) the next span must take: a derived execution root (``_Ids``)
_FORCED: ContextVar[tuple[int, int] | None] = ContextVar("flowlog_forced_ids", default=None)
_LOW64 = (1 << 64) - 1


_STATE = _State()


def configure_tracing(settings: Settings, service: str, *, exporter: Any = None
                      ) -> TracerProvider | None:
    """Install the SDK tracer for this process (returns it), or nothing when tracing is off.

    ``exporter`` (a span exporter, e.g. ``InMemorySpanExporter``) is added beside the OTLP
    exporter of ``settings.otlp_endpoint``. With neither, the sampler records nothing but
    trace ids are still made and propagated. Calling it again replaces the tracer.
    """
    if not settings.trace_enabled:
        _STATE.provider = _STATE.tracer = None
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased

    recording = exporter is not None or bool(settings.otlp_endpoint)
    sampler = (ParentBased(TraceIdRatioBased(settings.trace_sample_ratio)) if recording
               else ALWAYS_OFF)
    provider = TracerProvider(
        resource=Resource.create({"service.name": f"flowlog-{service}",
                                  "service.namespace": "flowlog"}),
        sampler=sampler, id_generator=_ids())
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    if _STATE.provider is not None:
        _STATE.provider.shutdown()
    _STATE.provider = provider
    _STATE.tracer = provider.get_tracer("flowlog")
    _STATE.recording = recording
    _STATE.ratio_bound = round(max(0.0, min(1.0, settings.trace_sample_ratio)) * (_LOW64 + 1))
    return provider


def use_memory_exporter(settings: Settings, service: str = "test") -> InMemorySpanExporter:
    """Tests: record every span in memory (``exporter.get_finished_spans()``)."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    configure_tracing(settings.model_copy(update={"trace_enabled": True}), service,
                      exporter=exporter)
    return exporter


def _ids() -> Any:
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _Ids(RandomIdGenerator):
        """Random ids, except for an execution's root span (``_FORCED``)."""

        def generate_trace_id(self) -> int:
            forced = _FORCED.get()
            return forced[0] if forced else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _FORCED.get()
            return forced[1] if forced else super().generate_span_id()

    return _Ids()


def execution_ids(execution_id: str) -> tuple[int, int]:
    """The trace id and root span id of an execution started without outside context.

    The trace id is the execution id's 128 bits (a UUID; other ids are hashed), so any
    role can rebuild the context of a record that carries none (a timer fired, a command
    from the CLI) and its span still joins the execution's trace, under its root span.
    """
    try:
        trace_id = uuid.UUID(execution_id).int
    except ValueError:
        trace_id = int.from_bytes(hashlib.blake2b(execution_id.encode(), digest_size=16)
                                  .digest(), "big")
    span_id = int.from_bytes(hashlib.blake2b(execution_id.encode(), digest_size=8,
                                             person=b"flowlog-root").digest(), "big")
    return trace_id or 1, span_id or 1


def execution_traceparent(execution_id: str) -> bytes:
    """The W3C ``traceparent`` of an execution's root span (see ``execution_ids``); its
    sampled flag is the ratio sampler's decision on that trace id when spans are recorded."""
    return _execution_traceparent(execution_id, _STATE.recording, _STATE.ratio_bound)


# An execution's records come together (~0.1 µs a hit, not ~10). Bounded small: the
# executions in flight at once, not history (65,536 entries held ~25 MB, which the memory
# benchmark saw as ~0.4 KB of RSS per execution until the cache was full).
@lru_cache(maxsize=4_096)
def _execution_traceparent(execution_id: str, recording: bool, bound: int) -> bytes:
    trace_id, span_id = execution_ids(execution_id)
    sampled = recording and (trace_id & _LOW64) < bound
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}".encode()


def shutdown_tracing() -> None:
    """Flush and stop the exporters (end of process)."""
    if _STATE.provider is not None:
        _STATE.provider.shutdown()
    _STATE.provider = _STATE.tracer = None
    _STATE.recording = False


def tracer() -> trace.Tracer:
    """The process's tracer (the API's no-op tracer when tracing is off)."""
    return _STATE.tracer or trace.get_tracer("flowlog")


# --- headers ----------------------------------------------------------------------------------

def carrier(headers: Sequence[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    """Kafka headers (aiokafka or confluent-kafka) as the text map a propagator reads."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        if value is None:
            continue
        out[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    return out


def extract(headers: Sequence[tuple[str, bytes | str | None]] | None) -> otel_context.Context:
    """The trace context of a record's headers (empty when it has none)."""
    return _extract(carrier(headers))


def inject(ctx: otel_context.Context | None = None) -> Headers:
    """``traceparent`` (and ``tracestate``) of ``ctx`` (default: the current context) as
    Kafka headers; empty when there is no valid span."""
    text: dict[str, str] = {}
    _inject(text, context=ctx)
    return [(k, v.encode()) for k, v in text.items()]


def current_trace_id() -> str | None:
    """The hex trace id of the current OpenTelemetry span, if any."""
    span_ctx = trace.get_current_span().get_span_context()
    return format(span_ctx.trace_id, "032x") if span_ctx.is_valid else None


def trace_id_of(headers: Sequence[tuple[str, Any]] | None) -> str | None:
    """The trace id of a record's ``traceparent`` header, without parsing anything else."""
    tp = _traceparent(headers)
    return tp[3:35].decode() if tp is not None and len(tp) >= 55 else None


_ODD_HEX = frozenset(b"13579bdfBDF")


def _sampled(tp: bytes) -> bool:
    """The sampled bit of a traceparent's flags (the low bit of its last hex digit)."""
    return bool(tp) and tp[-1] in _ODD_HEX


def _traceparent(headers: Sequence[tuple[str, Any]] | None) -> bytes | None:
    if headers:
        for key, value in headers:
            if key == TRACEPARENT:
                return value if isinstance(value, bytes) else str(value).encode()
    return None


# --- one hop: input record -> span -> output headers -------------------------------------------

class Hop:
    """One record's passage through a role: its output ``headers``, ``trace_id`` and span."""

    __slots__ = ("headers", "span", "token", "trace_id")

    def __init__(self, headers: Headers, trace_id: str | None, span: Any = None,
                 token: Any = None) -> None:
        self.headers = headers
        self.trace_id = trace_id
        self.span = span
        self.token = token

    def error(self, exc: BaseException) -> None:
        if self.span is not None:
            self.span.record_exception(exc)
            self.span.set_status(Status(StatusCode.ERROR, str(exc)[:200]))

    def end(self) -> None:
        if self.token is not None:
            otel_context.detach(self.token)
            self.token = None
        if self.span is not None:
            self.span.end()
            self.span = None


def begin(name: str, headers: Sequence[tuple[str, Any]] | None,
          attributes: Mapping[str, str | int] | None = None, *, activate: bool = False,
          execution_id: str | None = None, root: bool = False) -> Hop:
    """Start the hop of one input record; call ``end()`` on the result when done.

    A record without ``traceparent`` but with its ``execution_id`` joins that execution's
    trace (``execution_ids``); with ``root`` (a trigger) its span *is* the root span.
    ``activate`` makes the span current (for spans and SDK calls nested inside it); only
    where the hop does not outlive the caller's context (not across awaits of other work).

    The common case returns early with no SDK call and no span: tracing off, or a trace
    not sampled (the input's flags, or the execution's own trace id against the ratio).
    """
    tp = None
    if headers:  # _traceparent, inlined: this runs for every record of every role
        for key, value in headers:
            if key == TRACEPARENT:
                tp = value if isinstance(value, bytes) else str(value).encode()
                break
    tracer_ = _STATE.tracer
    if tp is not None:
        if tracer_ is None or not (tp and tp[-1] in _ODD_HEX):
            # off, or a trace not sampled: forward the input's context as it is (no span)
            return _forward(tp)
    elif tracer_ is None:
        return Hop(_NO_HEADERS, None)
    elif execution_id is not None:  # the execution's own trace
        tp = execution_traceparent(execution_id)
        if tp[-1] not in _ODD_HEX:  # not sampled: its context is all the next hops need
            return _forward(tp)
        if root:  # a real root span with the execution's ids
            forced = _FORCED.set(execution_ids(execution_id))
            try:
                span = tracer_.start_span(name, context=None, kind=SpanKind.CONSUMER,
                                          attributes=dict(attributes or {}))
            finally:
                _FORCED.reset(forced)
            return _hop(span, activate)
        headers = [(TRACEPARENT, tp)]  # a child of the execution's root
    # sampled (or a record with neither context nor execution: a new trace)
    parent = _extract(carrier(headers)) if tp is not None else None
    span = tracer_.start_span(name, context=parent, kind=SpanKind.CONSUMER,
                              attributes=dict(attributes or {}))
    return _hop(span, activate)


# The hop of a record whose trace is not recorded only hands its ``traceparent`` on: one
# object per traceparent, shared by the records that carry it (an execution's records
# carry the same one at the default settings), instead of a Hop, a list and a decoded
# trace id per record. It has no span or token (``end`` and ``error`` do nothing), and
# its ``headers`` list, like every hop's, is handed to producers and never changed.
# Bounded like ``_execution_traceparent`` (the traces in flight, not history).
@lru_cache(maxsize=4_096)
def _forward(tp: bytes) -> Hop:
    return Hop([(TRACEPARENT, tp)], tp[3:35].decode() if len(tp) >= 55 else None)


def _hop(span: Any, activate: bool) -> Hop:
    span_ctx = span.get_span_context()
    trace_id = format(span_ctx.trace_id, "032x")
    out = inject(trace.set_span_in_context(span))
    token = otel_context.attach(trace.set_span_in_context(span)) if activate else None
    # a span not recorded has nothing to end
    return Hop(out, trace_id, span if span.is_recording() else None, token)


__all__ = ["TRACEPARENT", "Headers", "Hop", "begin", "carrier", "configure_tracing",
           "current_trace_id", "execution_ids", "execution_traceparent", "extract", "inject",
           "shutdown_tracing", "trace_id_of", "tracer", "use_memory_exporter"]
