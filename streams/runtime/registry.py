"""Every workflow definition, in memory, followed from the workflow-definitions topic.

Every worker reads the whole topic (all partitions, from the beginning) before it handles
inputs, and keeps following it. Executions keep their pinned version: every version stays.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.aggregates.definition import CompiledDefinition, compile_definition
from flowlog.aggregates.definition.lifecycle import transition
from flowlog.aggregates.definition.validate import validate_definition
from flowlog.aggregates.errors import InvalidTransition
from flowlog.schemas.codec import Codec
from flowlog.streams.runtime import policy
from flowlog.streams.runtime.kafka import catalog, free_consumer, seek_to_start

from flowlog.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Workflow:
    workflow_id: str
    versions: dict[int, dict[str, Any]] = field(default_factory=dict)
    status: str = "draft"  # draft, active, paused, archived
    reason: str = ""

    @property
    def latest(self) -> int:
        return max(self.versions) if self.versions else 0

    @property
    def accepting(self) -> bool:
        return policy.accepts(self.status)


class DefinitionRegistry:
    """Workflow id → versions and status, from definition events."""

    def __init__(self) -> None:
        self.workflows: dict[str, Workflow] = {}
        self._compiled: dict[tuple[str, int], CompiledDefinition | None] = {}

    def apply(self, name: str, record: dict[str, Any]) -> None:
        """Fold one definition event (a decoded record) by the one lifecycle rule
        (`aggregates.definition.lifecycle`); an event it forbids is logged and ignored."""
        import orjson

        wid = record["workflow_id"]
        wf = self.workflows.get(wid)
        current = None if wf is None or not wf.versions else wf.status
        if name == "WorkflowDefined" and current is not None:
            name = "WorkflowUpdated"  # a re-definition adds a version, as the SDK allows
        try:
            status = transition(current, name, wid)
        except InvalidTransition as exc:
            log.warning("definition event ignored: %s", exc)
            return
        wf = self.workflows.setdefault(wid, Workflow(wid))
        wf.status = status
        if name in ("WorkflowDefined", "WorkflowUpdated"):
            raw = record["definition"]
            wf.versions[int(record["version"])] = orjson.loads(raw) if isinstance(raw, str) else raw
        elif name == "WorkflowActivated":
            wf.reason = ""
        elif name == "WorkflowPaused":
            wf.reason = record.get("reason") or ""

    def resolve(self, workflow_id: str, version: int) -> int:
        """The version a trigger pins: its own, or the newest when it gives 0."""
        wf = self.workflows.get(workflow_id)
        return policy.pin_version(version, None if wf is None else wf.versions.keys())

    def accepting(self, workflow_id: str) -> bool:
        wf = self.workflows.get(workflow_id)
        return policy.accepts(None if wf is None else wf.status)

    def definition(self, workflow_id: str, version: int) -> CompiledDefinition | None:
        """The compiled definition of one version (None: unknown, or no longer valid)."""
        key = (workflow_id, version)
        if key in self._compiled:
            return self._compiled[key]
        wf = self.workflows.get(workflow_id)
        raw = wf.versions.get(version) if wf is not None else None
        compiled = None
        if raw is not None:
            raw = copy.deepcopy(raw)
            raw["version"] = version
            spec, issues = validate_definition(raw)
            if spec is None:
                log.error("definition %s v%s is invalid here: %s", workflow_id, version,
                          [i.render() for i in issues])
            else:
                compiled = compile_definition(spec)
        if raw is not None:
            self._compiled[key] = compiled
        return compiled


class RegistryFollower:
    """Reads workflow-definitions into a registry and keeps following it."""

    def __init__(self, settings: Settings, registry: DefinitionRegistry | None = None,
                 codec: Codec | None = None) -> None:
        self.settings = settings
        self.registry = registry or DefinitionRegistry()
        self.codec = codec or Codec.from_settings(settings)
        self.topic = catalog(settings).name("workflow-definitions")
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        """Read every definition up to the end, then follow in the background."""
        self._consumer = free_consumer(self.settings, client_id="flowlog-definitions",
                                       enable_auto_commit=False, auto_offset_reset="earliest")
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic)
        if not parts:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic) or {0}
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await seek_to_start(self._consumer, tps)
        await self.catch_up(within=60.0, _poll=True)
        self._task = asyncio.create_task(self._follow(), name="definitions-follower")

    async def _poll_once(self, timeout_ms: int) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=1000)
        for tp, msgs in batches.items():
            for msg in msgs:
                try:
                    decoded = self.codec.decode(msg.value)
                    self.registry.apply(decoded.name, decoded.record)
                except Exception:
                    log.exception("bad definition record at %s@%s", tp, msg.offset)
                self._positions[tp] = msg.offset + 1
        if batches:
            self._advanced.set()

    async def _follow(self) -> None:
        while True:
            try:
                await self._poll_once(500)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("definition follower")
                await asyncio.sleep(1)

    async def catch_up(self, within: float = 10.0, _poll: bool = False) -> bool:
        """Wait until the registry holds every definition written before this call."""
        assert self._consumer is not None
        tps = list(self._consumer.assignment())
        ends = await self._consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while any(self._positions.get(tp, 0) < end for tp, end in ends.items()):
            if loop.time() > deadline:
                return False
            if _poll:
                await self._poll_once(200)
            else:
                self._advanced.clear()
                try:
                    await asyncio.wait_for(self._advanced.wait(), 0.2)
                except TimeoutError:
                    pass
        return True

    async def stop(self) -> None:
        from flowlog.streams.runtime.kafka import cancel_quietly

        await cancel_quietly(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
