"""`subworkflow` nodes, run by the executor: start the child, wait for its end.

The child's execution id is derived from the task key (the trigger's dedup key), so a
redelivered task finds the same child instead of starting a second one. Its outcome is
read from execution-events: succeeded → the child's output; failed, cancelled or rejected
→ the node fails (not retryable: the child already had its own retries).
"""

from __future__ import annotations

from typing import Any

from flowlog.schemas.events import TriggerReceived
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.executors.errors import NonRetryable, TaskTimeout
from flowlog.streams.executors.nodes.base import NodeContext
from flowlog.streams.runtime import tools


async def run_subworkflow_node(ctx: NodeContext) -> Any:
    task = ctx.task
    workflow = str(ctx.config.get("workflow") or "")
    version = int(ctx.config.get("version") or 0)
    child_input = task.input if isinstance(task.input, dict) else {"value": task.input}
    trigger = TriggerReceived(
        workflow_id=workflow, workflow_version=version, source="event", input=child_input,
        dedup_key=task.task_key, correlation_id=task.correlation_id, tenant=task.tenant)
    import asyncio

    def publish() -> None:
        with EventProducer.from_settings(ctx.settings) as producer:
            producer.publish_sync(trigger)

    await asyncio.to_thread(publish)
    events = await tools.collect(ctx.settings, trigger.execution_id, follow=True,
                                 within=max(ctx.remaining_s(), 0.1))
    last = events[-1] if events else None
    if last is None or last["event_type"] not in tools.TERMINAL:
        raise TaskTimeout(f"child execution {trigger.execution_id} did not end in time")
    if last["event_type"] == "ExecutionSucceeded":
        import orjson

        out = last.get("output")
        return orjson.loads(out) if isinstance(out, str) else out
    detail = last.get("reason") or (last.get("error") or {}).get("message", "")
    raise NonRetryable(f"child execution {trigger.execution_id} of {workflow}: "
                       f"{last['event_type']} {detail}".strip())
