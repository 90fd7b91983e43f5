"""Observability of one process in one call: logs, tracing, the metrics endpoint.

    obs = start_process(settings, "orchestrator+executor", roles=["orchestrator", "executor"])
    ...                 # start the roles; register consumers with obs.watch_consumer(...)
    obs.ready()         # /readyz turns 200
    ...
    obs.stop()          # on the way out (removes the run file, flushes spans)

Called from inside a running event loop it also starts the loop heartbeat (/healthz) and
the consumer lag sampler; outside one, ``/healthz`` answers 200 while the process lives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from flowlog.observability import logs, metrics, tracing
from flowlog.observability.lag import LAG
from flowlog.observability.server import Health, MetricsServer
from flowlog.settings import Settings

log = logging.getLogger(__name__)
_CURRENT: ProcessObservability | None = None


class ProcessObservability:
    def __init__(self, settings: Settings, name: str, roles: list[str],
                 server: MetricsServer | None, health: Health) -> None:
        self.settings = settings
        self.name = name
        self.roles = roles
        self.server = server
        self.health = health
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str | None:
        """``http://host:port`` of /metrics, /healthz, /readyz (None when disabled)."""
        return self.server.url if self.server else None

    def ready(self, ready: bool = True) -> None:
        self.health.is_ready = ready

    def failed(self, reason: str) -> None:
        """Mark the process failed: /readyz answers 503 with the reason."""
        self.health.failure = reason

    def watch_consumer(self, group: str, consumer: Any) -> None:
        """Sample this consumer's lag into ``flowlog_consumer_lag`` and /readyz."""
        LAG.watch(group, consumer)

    def _start_tasks(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.health.stall_after_s = float("inf")  # no loop to watch
            return
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="obs-heartbeat"))
        self._tasks.append(asyncio.create_task(
            LAG.run(self.settings.metrics_lag_interval_s), name="obs-lag"))

    async def _heartbeat(self) -> None:
        import time

        while True:
            self.health.beat = time.monotonic()
            await asyncio.sleep(1.0)

    def stop(self) -> None:
        global _CURRENT
        for task in self._tasks:
            task.cancel()
        if self.server is not None:
            self.server.stop()
        tracing.shutdown_tracing()
        if _CURRENT is self:
            _CURRENT = None


def start_process(settings: Settings, name: str, roles: Sequence[str] | None = None, *,
                  log_level: str = "INFO", json_logs: bool | None = None,
                  configure_logs: bool = True) -> ProcessObservability:
    """Configure JSON logs and tracing, start /metrics, /healthz and /readyz.

    ``name`` names the process in logs, traces, metrics labels and its run file.
    """
    global _CURRENT
    roles_ = list(roles or [name])
    if configure_logs:
        logs.configure_logging(name, log_level,
                               json=settings.log_json if json_logs is None else json_logs)
    tracing.configure_tracing(settings, name)
    from flowlog.observability import hooks

    hooks.COUNTING = settings.metrics_enabled
    metrics.PROCESS_INFO.info({"process": name, "roles": ",".join(roles_),
                               "version": _version()})
    health = Health(name, roles_)
    health.extra = lambda: {"lag": dict(LAG.last)}
    server = None
    if settings.metrics_enabled:
        server = MetricsServer(health, settings.metrics_host, settings.metrics_port,
                               settings.state_dir / "run" / "metrics")
        log.info("metrics: %s/metrics (also /healthz, /readyz)", server.url)
    obs = ProcessObservability(settings, name, roles_, server, health)
    obs._start_tasks()
    _CURRENT = obs
    return obs


def current() -> ProcessObservability | None:
    """The process's observability, if ``start_process`` ran (processes may mark
    themselves ready or failed through it)."""
    return _CURRENT


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowlog")
    except PackageNotFoundError:
        return "unknown"
