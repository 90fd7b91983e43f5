"""The composition root: every client, guard and store a role uses is built here.

A role's class builds nothing that talks to the outside: `Worker` (worker.py) calls the
functions below, which build the Kafka clients (`kafka.py`'s factories: consumer group,
isolation level, client id per role), the decode guard with its quarantine producer, the
codec with its blob store (claim checks), the Redis admission, the executor's task runner
with its secrets resolver, breakers and rate limiters, and hand them to the role's
constructor. Unit tests build the
roles with fakes instead (tests/unit/streams/runtime).

* orchestrator: consumer group `orchestrator` over triggers, commands, node-results and
  timers; the shared producer; a guard without pydantic; an execution-events reader.
* dispatcher (role `timers`): group `dispatcher` over execution-events; the shared
  producer; a codec; admission.
* executor: group `executor` over node-tasks; the shared producer; a validating guard; the
  task runner.
* processor: group `processor` over the four inputs; a transactional producer per owned
  partition (`FLOWLOG_PROCESSING_GUARANTEE=exactly_once`) or the shared producer
  (`at_least_once`); a guard; admission; a snapshot reader.

Every consumer reads committed records (`FLOWLOG_KAFKA_ISOLATION_LEVEL`, default
read_committed); the processor's always does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from flowlog.schemas.claimcheck import BlobStore, blob_store_from_settings
from flowlog.schemas.codec import Codec
from flowlog.schemas.guard import DecodeGuard, KafkaQuarantine
from flowlog.streams.runtime import kafka, rdkafka
from flowlog.streams.runtime.admission import Admission
from flowlog.streams.runtime.dispatcher import Dispatcher
from flowlog.streams.runtime.executor import Executor, Runner
from flowlog.streams.runtime.orchestrator import INPUT_TOPICS, Orchestrator
from flowlog.streams.runtime.ports import Consumer
from flowlog.streams.runtime.processor import Processor
from flowlog.streams.runtime.registry import RegistryFollower

from flowlog.settings import Settings

if TYPE_CHECKING:  # the executors package loads only in a process that runs tasks
    from flowlog.streams.executors.limits import Limits

Closer = Callable[[], Awaitable[None]]


@dataclass
class Shared:
    """What the roles of one process share; `close` stops what was built for them."""

    settings: Settings
    producer: AIOKafkaProducer
    follower: RegistryFollower | None = None
    blobs: BlobStore | None = None
    closers: list[Closer] = field(default_factory=list)

    def blob_store(self) -> BlobStore:
        """One blob store per process (claim checks), shared by every role's codec."""
        if self.blobs is None:
            self.blobs = blob_store_from_settings(self.settings)
        return self.blobs

    def codec(self) -> Codec:
        """A codec (schemas, schema registry client, the process's blob store)."""
        return Codec.from_settings(self.settings, claim_store=self.blob_store())

    def guard(self, *, validate: bool) -> DecodeGuard:
        """A decode guard quarantining to the settings' quarantine topic; records over 4x
        the claim-check threshold are refused (as `DecodeGuard.from_settings`)."""
        topic = kafka.catalog(self.settings).name("quarantine")
        return DecodeGuard(self.codec(),
                           KafkaQuarantine(self.settings.bootstrap_servers, topic),
                           validate=validate,
                           max_bytes=4 * self.settings.claim_check_threshold_bytes)

    def admission(self) -> Admission:
        """Flow control in Redis (connects on first use); closed with the process."""
        adm = Admission(self.settings.redis_url, self.settings.topic_prefix,
                        self.settings.tenant_max_executions)
        self.closers.append(adm.aclose)
        return adm

    def definitions(self) -> RegistryFollower:
        assert self.follower is not None, "start the definitions follower first"
        return self.follower

    async def close(self) -> None:
        """Close what the roles were given, newest first (the roles have stopped)."""
        while self.closers:
            await self.closers.pop()()


def orchestrator(shared: Shared) -> Orchestrator:
    s = shared.settings
    cat = kafka.catalog(s)
    consumer = group_consumer(s, "orchestrator", [cat.name(t) for t in INPUT_TOPICS])
    # no pydantic on the hot path: the Avro decode enforces the types
    return Orchestrator(s, shared.definitions(), shared.producer, consumer=consumer,
                        guard=shared.guard(validate=False),
                        read_events=partial(kafka.read_partition, s))


def dispatcher(shared: Shared) -> Dispatcher:
    s = shared.settings
    consumer = group_consumer(s, "dispatcher", [kafka.catalog(s).name("execution-events")])
    return Dispatcher(s, shared.definitions(), shared.producer, consumer=consumer,
                      codec=shared.codec(), admission=shared.admission())


def executor(shared: Shared, runner: Runner) -> Executor:
    s = shared.settings
    consumer = group_consumer(s, "executor", [kafka.catalog(s).name("node-tasks")])
    return Executor(s, shared.producer, runner, consumer=consumer,
                    guard=shared.guard(validate=True))


def processor(shared: Shared) -> Processor:
    s = shared.settings
    cat = kafka.catalog(s)
    consumer = kafka.group_consumer(s, "processor", [cat.name(t) for t in INPUT_TOPICS])
    eos = s.processing_guarantee == "exactly_once"
    return Processor(s, shared.definitions(), consumer=consumer,
                     guard=shared.guard(validate=False), admission=shared.admission(),
                     txn_producer=partial(kafka.transactional_producer, s) if eos else None,
                     producer=None if eos else shared.producer,
                     snapshot_reader=partial(snapshot_reader, s))


def snapshot_reader(settings: Settings) -> AIOKafkaConsumer:
    """The processor's reader of its snapshot partition: committed records only, big
    fetches (a snapshot record may be tens of MB)."""
    return kafka.free_consumer(settings, enable_auto_commit=False,
                               isolation_level="read_committed",
                               max_partition_fetch_bytes=64 * 1024 * 1024,
                               fetch_max_bytes=64 * 1024 * 1024)


def limits(shared: Shared) -> Limits:
    """The executor's limits: breakers in Redis or each process's own
    (`FLOWLOG_BREAKER_STORE`), rate limiters (`FLOWLOG_EXECUTOR_RATE_LIMITER`), concurrency
    per node type and target; their Redis clients are closed with the process."""
    from flowlog.streams.executors.limits import Limits

    built = Limits.from_settings(shared.settings)
    shared.closers.append(built.aclose)
    return built


def default_runner(shared: Shared) -> Runner:
    """The `TaskRunner` with the built-in tools plus `settings.tool_modules`, a secrets
    resolver, the limits of `limits` (both closed with the process) and the `subworkflow`
    node."""
    from flowlog.streams.executors.runner import TaskRunner
    from flowlog.streams.executors.secrets import SecretResolver
    from flowlog.streams.executors.tools.registry import ToolRegistry
    from flowlog.streams.runtime.subworkflow import run_subworkflow_node

    settings = shared.settings
    tools = ToolRegistry()
    tools.register_modules(settings.tool_modules)
    secrets = SecretResolver(settings)
    shared.closers.append(secrets.aclose)
    return TaskRunner(settings, tools=tools, secrets=secrets, limits=limits(shared),
                      node_runners={"subworkflow": run_subworkflow_node})


def producer(settings: Settings) -> AIOKafkaProducer:
    """The process's idempotent producer, shared by the orchestrator, dispatcher and
    executor (librdkafka's with `FLOWLOG_KAFKA_CLIENT=confluent`, streams/runtime/rdkafka.py)."""
    if settings.kafka_client == "confluent":
        return rdkafka.producer(settings)  # type: ignore[return-value,unused-ignore]
    return kafka.producer(settings)


def group_consumer(settings: Settings, group: str, topics: list[str]) -> Consumer:
    """A role's group member on the client `FLOWLOG_KAFKA_CLIENT` names."""
    if settings.kafka_client == "confluent":
        return rdkafka.group_consumer(settings, group, topics)
    return kafka.group_consumer(settings, group, topics)
