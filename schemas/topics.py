"""The topic catalog (DESIGN.md section 3) and its idempotent application to a cluster.

One place declares every topic: name (with a configurable prefix), key, partitions,
retention and cleanup policy. ``apply_topics`` creates what is missing, aligns configs
(incremental alter: only the keys the catalog owns), and reports drift. Partition
counts are never changed silently: growing a topic re-maps execution ids to partitions,
which breaks per-execution order for anything in flight, so it happens only when asked
(``grow_partitions=True``, ``flowlog topics apply --grow-partitions``). A topic with
more partitions than the catalog says can only be reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowlog.settings import Settings

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = "-1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the catalog declares it."""

    base: str  # name without prefix, e.g. "triggers"
    name: str  # full name, e.g. "flowlog.triggers"
    key: str
    partitions: int
    config: dict[str, str]
    description: str

    @property
    def retention(self) -> str:
        ms = int(self.config.get("retention.ms", "0"))
        return "forever" if ms < 0 else f"{ms // DAY_MS} days"


@dataclass(frozen=True)
class TopicCatalog:
    """Every topic of the engine, with the prefix applied."""

    prefix: str
    topics: dict[str, TopicSpec] = field(default_factory=dict)  # by base name

    @classmethod
    def build(cls, prefix: str = "flowlog.", default_partitions: int = 6) -> TopicCatalog:
        """The catalog; ``default_partitions`` for every execution-keyed topic."""
        p = default_partitions

        def spec(base: str, key: str, parts: int, days: int | None, about: str,
                 **extra: str) -> TopicSpec:
            config = {
                "cleanup.policy": "delete",
                "retention.ms": FOREVER if days is None else str(days * DAY_MS),
                **{k.replace("_", "."): v for k, v in extra.items()},
            }
            return TopicSpec(base, prefix + base, key, parts, config, about)

        specs = [
            spec("workflow-definitions", "workflow_id", 1, None,
                 "every definition version; kept forever, never compacted away"),
            spec("triggers", "execution_id", p, 7, "triggers from producers"),
            spec("commands", "execution_id", p, 7, "cancel, retry node, resume"),
            spec("node-tasks", "execution_id", p, 7, "one task per node attempt"),
            spec("node-results", "execution_id", p, 7, "results of node attempts"),
            spec("timers", "execution_id", p, 7, "due timers"),
            spec("execution-events", "execution_id", p, None,
                 "the executions' history (orchestrator only); the log of record"),
            spec("quarantine", "original key", 1, 90,
                 "records no consumer could decode or validate, with the reason",
                 max_message_bytes=str(16 * 1024 * 1024)),
        ]
        return cls(prefix, {s.base: s for s in specs})

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicCatalog:
        return cls.build(settings.topic_prefix, settings.default_partitions)

    def name(self, base: str) -> str:
        """The full topic name of a catalog entry (``"triggers"`` -> ``"flowlog.triggers"``)."""
        return self.topics[base].name

    def __iter__(self) -> Any:
        return iter(self.topics.values())


@dataclass(frozen=True)
class TopicChange:
    """One difference between the catalog and the cluster, and what was done about it."""

    topic: str
    kind: str  # create | config | partitions | replication
    detail: str
    applied: bool  # False: drift that is reported but left as it is

    def __str__(self) -> str:
        state = "applied" if self.applied else "DRIFT (not changed)"
        return f"{self.topic}: {self.kind}: {self.detail} [{state}]"


@dataclass
class TopicState:
    """What the cluster has for one topic."""

    name: str
    exists: bool
    partitions: int = 0
    replication: int = 0
    config: dict[str, str] = field(default_factory=dict)


def _admin(bootstrap: str | Any) -> Any:
    if not isinstance(bootstrap, str):
        return bootstrap
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def describe_cluster(
    catalog: TopicCatalog, bootstrap: str | Any, timeout: float = 15.0
) -> dict[str, TopicState]:
    """The cluster's state of every catalog topic (partitions, replication, configs)."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = _admin(bootstrap)
    meta = admin.list_topics(timeout=timeout)
    states: dict[str, TopicState] = {}
    resources = []
    for spec in catalog:
        tm = meta.topics.get(spec.name)
        if tm is None or tm.error is not None:
            states[spec.name] = TopicState(spec.name, False)
            continue
        replication = min((len(p.replicas) for p in tm.partitions.values()), default=0)
        states[spec.name] = TopicState(spec.name, True, len(tm.partitions), replication)
        resources.append(ConfigResource(ResourceType.TOPIC, spec.name))
    if resources:
        for res, fut in admin.describe_configs(resources, request_timeout=timeout).items():
            entries = fut.result(timeout=timeout)
            states[res.name].config = {k: e.value for k, e in entries.items()}
    return states


def apply_topics(
    catalog: TopicCatalog,
    bootstrap: str | Any,
    *,
    replication_factor: int | None = None,
    grow_partitions: bool = False,
    dry_run: bool = False,
    timeout: float = 30.0,
) -> list[TopicChange]:
    """Make the cluster match the catalog; return every change made or drift found.

    Idempotent: a second run returns an empty list. ``replication_factor`` defaults to
    ``min(3, brokers)``.
    """
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    admin = _admin(bootstrap)
    if replication_factor is None:
        replication_factor = min(3, len(admin.list_topics(timeout=timeout).brokers))
    states = describe_cluster(catalog, admin, timeout)
    changes: list[TopicChange] = []
    creates, grows, alters = [], [], []
    for spec in catalog:
        state = states[spec.name]
        if not state.exists:
            creates.append(NewTopic(spec.name, spec.partitions, replication_factor,
                                    config=dict(spec.config)))
            changes.append(TopicChange(
                spec.name, "create",
                f"{spec.partitions} partitions, replication {replication_factor}, "
                f"retention {spec.retention}", not dry_run))
            continue
        if state.partitions < spec.partitions:
            grow = grow_partitions and not dry_run
            if grow:
                grows.append(NewPartitions(spec.name, spec.partitions))
            changes.append(TopicChange(
                spec.name, "partitions",
                f"has {state.partitions}, catalog says {spec.partitions}"
                + ("" if grow else "; growing re-maps keys: run with --grow-partitions "
                   "while producers and the orchestrator are stopped"), grow))
        elif state.partitions > spec.partitions:
            changes.append(TopicChange(
                spec.name, "partitions",
                f"has {state.partitions}, catalog says {spec.partitions}; partitions cannot "
                "shrink: raise default_partitions to match, or recreate the topic", False))
        if state.replication < min(replication_factor, 3) and state.replication:
            changes.append(TopicChange(
                spec.name, "replication",
                f"has {state.replication}, wanted {replication_factor}; "
                "reassign partitions with kafka-reassign-partitions", False))
        wrong = {k: v for k, v in spec.config.items() if state.config.get(k) != v}
        if wrong:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                       for k, v in wrong.items()]
            alters.append(ConfigResource(ResourceType.TOPIC, spec.name,
                                         incremental_configs=entries))
            detail = ", ".join(f"{k}: {state.config.get(k)} -> {v}" for k, v in wrong.items())
            changes.append(TopicChange(spec.name, "config", detail, not dry_run))
    if not dry_run:
        _wait(admin.create_topics(creates, operation_timeout=timeout) if creates else {})
        _wait(admin.create_partitions(grows, operation_timeout=timeout) if grows else {})
        _wait(admin.incremental_alter_configs(alters) if alters else {})
        if creates or grows or alters:
            _await_visible(catalog, admin, grow_partitions, timeout)
    return changes


def _await_visible(catalog: TopicCatalog, admin: Any, grown: bool, timeout: float) -> None:
    """Wait until the cluster's metadata shows the changes (they propagate asynchronously),
    so that a run right after this one sees them and changes nothing."""
    deadline = time.monotonic() + timeout
    while True:
        states = describe_cluster(catalog, admin, timeout)
        pending = [
            spec.name for spec in catalog
            if not states[spec.name].exists
            or (grown and states[spec.name].partitions < spec.partitions)
            or any(states[spec.name].config.get(k) != v for k, v in spec.config.items())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"topic changes not visible after {timeout}s: {pending}")
        time.sleep(0.2)


def _wait(futures: dict[Any, Any]) -> None:
    errors = []
    for what, fut in futures.items():
        try:
            fut.result()
        except Exception as exc:
            name = getattr(what, "name", what)
            # a concurrent `topics apply` may have created it first: that is the goal anyway
            if "TOPIC_ALREADY_EXISTS" in str(exc):
                continue
            errors.append(f"{name}: {exc}")
    if errors:
        raise RuntimeError("topic changes failed: " + "; ".join(errors))
