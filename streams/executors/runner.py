"""`TaskRunner`: runs one node task (no Kafka) and returns a `TaskOutcome`.

The streams runtime's executor worker decodes a `NodeTaskIssued`, calls `run`, and turns
the outcome into a `NodeResultReported`. `run` never raises for the task's own failure:
every error becomes `status="failed"` with `error={"type", "message", "retryable"}`.
Secret values resolved for the task are scrubbed from the output and the error message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx
from flowlog.streams.executors.errors import ExecutorError, TaskTimeout, Unsupported
from flowlog.streams.executors.http import HttpGateway
from flowlog.streams.executors.limits import Limits
from flowlog.streams.executors.nodes.base import NodeContext, NodeRunner
from flowlog.streams.executors.nodes.subworkflow import run_subworkflow_node
from flowlog.streams.executors.nodes.tool import run_tool_node
from flowlog.streams.executors.secrets import Redactor, SecretResolver
from flowlog.streams.executors.tools.registry import ToolRegistry

from flowlog.settings import Settings

if TYPE_CHECKING:
    from flowlog.schemas.events import NodeTaskIssued

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TaskOutcome:
    """What running a task came to; the fields of a `NodeResultReported` minus the envelope."""

    status: Literal["succeeded", "failed"]
    output: Any | None
    error: dict[str, Any] | None  # {"type": str, "message": str, "retryable": bool}
    started_at: datetime
    finished_at: datetime
    model_calls: list[dict[str, Any]] = field(default_factory=list)  # schemas ModelCall
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # schemas ToolCall

    @property
    def retryable(self) -> bool:
        return bool(self.error and self.error.get("retryable"))


def default_node_runners() -> dict[str, NodeRunner]:
    from flowlog.streams.executors.nodes.agent import run_agent_node
    from flowlog.streams.executors.nodes.webhook import run_webhook_node

    return {
        "tool": run_tool_node,
        "webhook": run_webhook_node,
        "agent": run_agent_node,
        "subworkflow": run_subworkflow_node,
    }


class TaskRunner:
    """Runs node tasks of every executor node type; one per executor process.

    `clock` gives aware wall-clock datetimes (started_at, finished_at, deadline checks);
    `monotonic` drives timeouts, latencies and breaker cool-downs. `limits` (breakers, rate
    limiters) come from the composition root (`compose.default_runner`), which closes
    them; without, the runner builds its own from the settings and closes them itself
    (unit tests that build a bare runner).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        tools: ToolRegistry | None = None,
        secrets: SecretResolver | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        http: httpx.AsyncClient | None = None,
        node_runners: dict[str, NodeRunner] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.settings = settings
        self.tools = tools if tools is not None else ToolRegistry()
        self._own_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(follow_redirects=False)
        self._own_secrets = secrets is None
        self.secrets = secrets if secrets is not None else SecretResolver(settings)
        self._own_limits = limits is None
        self.limits = limits if limits is not None else Limits.from_settings(settings,
                                                                             clock=monotonic)
        self.gateway = HttpGateway(self._http, self.limits)
        self.node_runners = dict(default_node_runners())
        self.node_runners.update(node_runners or {})
        self._clock = clock
        self._monotonic = monotonic

    def timeout_s(self, task: NodeTaskIssued) -> float:
        """Seconds the task may take: its timeout, capped by its deadline."""
        timeout_ms = (
            task.timeout_ms
            if task.timeout_ms and task.timeout_ms > 0
            else (self.settings.executor_default_timeout_ms)
        )
        until_deadline = (task.deadline_at - self._clock()).total_seconds()
        return min(timeout_ms / 1000.0, until_deadline)

    async def run(self, task: NodeTaskIssued) -> TaskOutcome:
        """Run one task; never raises for the task's own failure (cancellation propagates)."""
        started_at = self._clock()
        ctx: NodeContext | None = None
        redactor = Redactor()
        try:
            runner = self.node_runners.get(task.node_type)
            if runner is None:
                raise Unsupported(
                    f"node type {task.node_type!r} is not run by executors (they run: "
                    f"{', '.join(sorted(self.node_runners))})"
                )
            timeout_s = self.timeout_s(task)
            if timeout_s <= 0:
                raise TaskTimeout(
                    f"task {task.task_key} reached its deadline {task.deadline_at.isoformat()}"
                    " before it started"
                )
            deadline = time.monotonic() + timeout_s
            try:
                async with asyncio.timeout(timeout_s):
                    async with self.limits.node_type(task.node_type):
                        await self.limits.rate.acquire(
                            task.node_type, max_wait_s=deadline - time.monotonic()
                        )
                        config, used = await self.secrets.resolve_config(task.config or {})
                        if used:  # most tasks use no secret: skip the merge and sort
                            redactor.add(*used)
                        ctx = NodeContext(
                            task=task, config=config, settings=self.settings,
                            tools=self.tools, http=self.gateway, limits=self.limits,
                            secrets=self.secrets, redactor=redactor, deadline=deadline,
                        )  # fmt: skip
                        output = await runner(ctx)
            except TimeoutError:
                raise TaskTimeout(
                    f"task {task.task_key} ({task.node_type}) timed out after {timeout_s:.3f}s"
                ) from None
            return TaskOutcome(
                status="succeeded",
                output=redactor.json(output),
                error=None,
                started_at=started_at,
                finished_at=self._clock(),
                model_calls=ctx.model_calls,
                tool_calls=ctx.tool_calls,
            )
        except ExecutorError as exc:
            error = exc.to_dict()
        except Exception as exc:  # a bug of ours or a plugin's: report it, retryable
            # frames only: an exception's message may hold a secret value, so it is redacted
            log.error(
                "task %s: unexpected %s: %s\n%s", task.task_key, type(exc).__name__,
                redactor.text(str(exc)), "".join(traceback.format_tb(exc.__traceback__)),
            )  # fmt: skip
            error = {
                "type": "internal_error",
                "message": f"{type(exc).__name__}: {exc}",
                "retryable": True,
            }
        error["message"] = redactor.text(error["message"])
        return TaskOutcome(
            status="failed",
            output=None,
            error=error,
            started_at=started_at,
            finished_at=self._clock(),
            model_calls=ctx.model_calls if ctx else [],
            tool_calls=ctx.tool_calls if ctx else [],
        )

    async def aclose(self) -> None:
        if self._own_limits:
            await self.limits.aclose()
        if self._own_secrets:
            await self.secrets.aclose()
        if self._own_http:
            await self._http.aclose()
