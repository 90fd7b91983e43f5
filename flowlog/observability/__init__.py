"""Metrics (prometheus-client), JSON logs (structlog) and traces (OpenTelemetry) every
flowlog process shares.

    from flowlog.observability import start_process
    obs = start_process(settings, "projector")      # logs, tracing, /metrics /healthz /readyz
    obs.ready()                                     # /readyz answers 200 from now on
    ...
    obs.stop()

Metric objects are defined once in ``metrics`` (``from flowlog.observability.metrics import
PROJECTION_LAG``); header propagation is in ``tracing``; log context in ``logs``.
"""

from __future__ import annotations

from flowlog.observability.process import ProcessObservability, start_process

__all__ = ["ProcessObservability", "start_process"]
