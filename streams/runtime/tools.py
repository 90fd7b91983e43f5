"""Shell-side helpers: apply definitions, trigger, and read an execution's history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.aggregates.definition.lifecycle import transition
from flowlog.aggregates.definition.model import WorkflowSpec
from flowlog.aggregates.definition.parse import parse_text
from flowlog.aggregates.definition.tool_checks import check_tools
from flowlog.aggregates.definition.validate import validate_definition
from flowlog.aggregates.errors import DefinitionInvalid
from flowlog.schemas.codec import Codec
from flowlog.schemas.events import (
    TriggerReceived,
    WorkflowActivated,
    WorkflowDefined,
    WorkflowUpdated,
)
from flowlog.schemas.sdk import EventProducer
from flowlog.streams.runtime.kafka import catalog, ensure_topics, partition_of, seek_to_start
from flowlog.streams.runtime.registry import RegistryFollower

from flowlog.settings import Settings

TERMINAL = frozenset({"ExecutionSucceeded", "ExecutionFailed", "ExecutionCancelled",
                      "ExecutionRejected"})


def _strip_version(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in raw.items() if k != "version"}


async def load_registry(settings: Settings) -> RegistryFollower:
    follower = RegistryFollower(settings)
    await follower.start()
    return follower


def tool_catalog(settings: Settings) -> dict[str, dict[str, Any]]:
    """The tools an executor with these settings has: entry points plus tool modules."""
    from flowlog.streams.executors.tools.registry import ToolRegistry

    registry = ToolRegistry()
    registry.register_modules(settings.tool_modules)
    return registry.catalog()


def check_definition(settings: Settings, raw: Any, *, allow_missing_tools: bool = False
                     ) -> WorkflowSpec:
    """Validate a parsed definition, including its tool and agent nodes against the tools
    installed here; raises `DefinitionInvalid` with every issue."""
    spec, issues = validate_definition(raw)
    if spec is None:
        raise DefinitionInvalid(issues)
    issues = check_tools(spec, tool_catalog(settings), allow_missing=allow_missing_tools)
    if issues:
        raise DefinitionInvalid(issues)
    return spec


def apply_definition(settings: Settings, path: Path, *, draft: bool = False,
                     allow_missing_tools: bool = False) -> str:
    """Validate and publish a definition; returns what was done (a line for the user).

    Idempotent: the same content as the newest version publishes nothing (but activates it
    unless ``draft``, when it is not active).
    """
    raw = parse_text(path.read_text(encoding="utf-8"), filename=path.name)
    spec = check_definition(settings, raw, allow_missing_tools=allow_missing_tools)
    ensure_topics(settings)

    async def current() -> tuple[int, dict[str, Any] | None, str]:
        follower = await load_registry(settings)
        try:
            wf = follower.registry.workflows.get(spec.id)
            if wf is None or not wf.versions:
                return 0, None, "none"
            return wf.latest, wf.versions[wf.latest], wf.status
        finally:
            await follower.stop()

    latest, latest_raw, status = asyncio.run(current())
    events: list[Any] = []
    body = _strip_version(raw)
    if latest_raw is not None and _strip_version(latest_raw) == body:
        version, what = latest, f"{spec.id}: v{latest} unchanged"
    else:
        version = latest + 1
        cls = WorkflowDefined if latest == 0 else WorkflowUpdated
        events.append(cls(workflow_id=spec.id, workflow_version=version, version=version,
                          definition=body))
        what = f"{spec.id}: v{version} {'defined' if latest == 0 else 'published'}"
    if not draft and (status != "active" or events):
        events.append(WorkflowActivated(workflow_id=spec.id, workflow_version=version))
        what += ", active"
    check: str | None = None if status == "none" else status
    for e in events:  # the lifecycle every reader applies: refuse before publishing
        check = transition(check, e.event_type, spec.id)
    if events:
        with EventProducer.from_settings(settings) as producer:
            summary = producer.publish_many(events)
            if not summary.ok:
                raise RuntimeError(f"publishing {spec.id} failed: {summary}")
    return what


def trigger(settings: Settings, workflow_id: str, input_: dict[str, Any], *,
            version: int = 0, dedup_key: str | None = None, tenant: str = "default") -> str:
    """Publish a manual trigger; returns the execution id (version 0: the newest)."""
    event = TriggerReceived(workflow_id=workflow_id, workflow_version=version,
                            source="manual", input=input_, dedup_key=dedup_key, tenant=tenant)
    with EventProducer.from_settings(settings) as producer:
        producer.publish_sync(event)
    return event.execution_id


async def history(settings: Settings, execution_id: str, *, follow: bool = False,
                  within: float | None = None) -> AsyncIterator[dict[str, Any]]:
    """The execution's events (decoded records) in seq order; ``follow`` waits for more
    until the terminal event (or ``within`` seconds)."""
    codec = Codec.from_settings(settings)
    topic = catalog(settings).name("execution-events")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level=settings.kafka_isolation_level)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tp = TopicPartition(topic, partition_of(execution_id, len(parts)))
        consumer.assign([tp])
        await seek_to_start(consumer, [tp])
        end = (await consumer.end_offsets([tp]))[tp]
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        seen = 0
        while True:
            if not follow and await consumer.position(tp) >= end:
                return
            if deadline is not None and loop.time() > deadline:
                return
            batch = await consumer.getmany(tp, timeout_ms=500)
            for msg in batch.get(tp, ()):
                if msg.key is None or msg.key.decode() != execution_id:
                    continue
                record = codec.decode(msg.value).record
                for e in record["events"]:
                    if e["seq"] <= seen:
                        continue
                    seen = e["seq"]
                    yield e
                    if follow and e["event_type"] in TERMINAL:
                        return
    finally:
        await consumer.stop()


async def collect(settings: Settings, execution_id: str, *, follow: bool = False,
                  within: float | None = None,
                  on_event: Callable[[dict[str, Any]], None] | None = None
                  ) -> list[dict[str, Any]]:
    out = []
    async for e in history(settings, execution_id, follow=follow, within=within):
        out.append(e)
        if on_event:
            on_event(e)
    return out
