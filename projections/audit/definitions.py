"""Where replays get definitions: a file (validated, every issue reported), or a recorded
version from the `workflow-definitions` topic (the log of record; kept forever)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from flowlog.aggregates.definition import compile_definition, load_definition, parse_definition
from flowlog.aggregates.definition.compiled import CompiledDefinition
from flowlog.aggregates.errors import DefinitionInvalid, DefinitionParseError
from flowlog.projections.audit.errors import AuditInputError
from flowlog.schemas.codec import Codec
from flowlog.schemas.topics import TopicCatalog

from flowlog.settings import Settings


def from_file(path: str | Path) -> CompiledDefinition:
    """A definition file, validated; AuditInputError names the file and every issue."""
    p = Path(path)
    if not p.is_file():
        raise AuditInputError(f"definition file {str(p)!r} does not exist (give a YAML or "
                              "JSON workflow definition, as `flowlog workflows validate`)")
    try:
        return compile_definition(load_definition(p))
    except DefinitionInvalid as exc:
        raise AuditInputError(f"definition file {str(p)!r} does not validate: {exc}") from None
    except DefinitionParseError as exc:
        raise AuditInputError(f"definition file {str(p)!r}: {exc}") from None


class RecordedDefinitions:
    """Every published version (read once from `workflow-definitions`), compiled on use."""

    def __init__(self, raw: dict[tuple[str, int], dict[str, Any]]) -> None:
        self.raw = raw
        self._compiled: dict[tuple[str, int], CompiledDefinition | None] = {}

    def get(self, workflow_id: str, version: int) -> CompiledDefinition | None:
        key = (workflow_id, version)
        if key not in self._compiled:
            raw = self.raw.get(key)
            compiled = None
            if raw is not None:
                try:
                    compiled = compile_definition(parse_definition({**raw, "version": version}))
                except (DefinitionInvalid, DefinitionParseError):
                    compiled = None
            self._compiled[key] = compiled
        return self._compiled[key]

    def require(self, workflow_id: str, version: int) -> CompiledDefinition:
        found = self.get(workflow_id, version)
        if found is None:
            known = sorted(v for w, v in self.raw if w == workflow_id)
            raise AuditInputError(
                f"workflow {workflow_id!r} version {version} is not in workflow-definitions "
                f"(versions there: {known or 'none'}); publish it with `flowlog workflows "
                "apply` or pass --definition FILE")
        return found

    def versions(self, workflow_id: str) -> list[int]:
        return sorted(v for w, v in self.raw if w == workflow_id)

    @classmethod
    def read(cls, settings: Settings) -> RecordedDefinitions:
        return cls(asyncio.run(_read(settings)))


async def _read(settings: Settings) -> dict[tuple[str, int], dict[str, Any]]:
    topic = TopicCatalog.from_settings(settings).name("workflow-definitions")
    codec = Codec.from_settings(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level=settings.kafka_isolation_level)
    await consumer.start()
    out: dict[tuple[str, int], dict[str, Any]] = {}
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return out
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, begins[tp])
        pending = {tp for tp in tps if ends[tp] > begins[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for msgs in batch.values():
                for msg in msgs:
                    try:
                        decoded = codec.decode(msg.value)
                    except Exception:  # a bad record is quarantined by the projectors
                        continue
                    r = decoded.record
                    if decoded.name in ("WorkflowDefined", "WorkflowUpdated"):
                        body = r.get("definition")
                        raw = orjson.loads(body) if isinstance(body, str | bytes) else body
                        if isinstance(raw, dict):
                            out[(str(r["workflow_id"]), int(r["version"]))] = raw
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return out
