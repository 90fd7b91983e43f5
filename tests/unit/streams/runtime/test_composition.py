"""One composition root: the roles build no client, store or guard; `compose.py` builds
them with the right consumer groups, isolation level and client ids. Nothing here
connects (aiokafka clients connect at `start`)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from flowlog.streams.runtime import compose, kafka, rdkafka
from flowlog.streams.runtime.dispatcher import Dispatcher
from flowlog.streams.runtime.executor import Executor
from flowlog.streams.runtime.orchestrator import Orchestrator
from flowlog.streams.runtime.processor import Processor

from flowlog.settings import Settings

pytestmark = pytest.mark.unit
RUNTIME = Path(__file__).resolve().parents[4] / "streams" / "runtime"
ROLES = ("orchestrator.py", "dispatcher.py", "executor.py", "processor.py")
#: calls that build a client, a store or a guard: the composition root's alone
BUILDERS = {"AIOKafkaConsumer", "AIOKafkaProducer", "group_consumer", "free_consumer",
            "transactional_producer", "producer", "Admission", "from_url", "from_settings",
            "DecodeGuard", "KafkaQuarantine", "Codec", "RegistryFollower", "SecretResolver",
            "TaskRunner"}


def called_names(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute)
                    else "")
    return out


def imported(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("role", ROLES)
def test_a_role_builds_no_client_store_or_guard(role: str) -> None:
    built = called_names(RUNTIME / role) & BUILDERS
    assert not built, f"streams/runtime/{role} builds {sorted(built)}: build it in compose.py"


def test_the_policy_is_pure() -> None:
    bad = {m for m in imported(RUNTIME / "policy.py")
           if m.split(".")[0] in {"aiokafka", "redis", "asyncio", "httpx", "confluent_kafka"}
           or (m.startswith("flowlog.streams.runtime.")
           and m not in {"flowlog.streams.runtime.admission"})}
    assert not bad, f"policy.py imports {sorted(bad)}"


class FakeFollower:
    registry: Any = None

    async def catch_up(self, within: float = 10.0) -> bool:
        return True


@pytest.fixture
async def shared() -> Any:
    s = Settings(topic_prefix="unit.", kafka_isolation_level="read_committed")
    sh = compose.Shared(s, kafka.producer(s))
    sh.follower = FakeFollower()  # type: ignore[assignment]
    yield sh
    await sh.close()


def consumer_config(consumer: Any) -> tuple[str, str, str, bool]:
    return (consumer._group_id, consumer._client._client_id, consumer._isolation_level,
            consumer._enable_auto_commit)


async def test_orchestrator(shared: compose.Shared) -> None:
    o = compose.orchestrator(shared)
    assert isinstance(o, Orchestrator) and o.producer is shared.producer
    assert consumer_config(o.consumer) == ("unit.orchestrator", "flowlog-orchestrator",
                                           "read_committed", False)
    assert sorted(o.consumer._client._topics) == sorted(o.input_topics) == [
        "unit.commands", "unit.node-results", "unit.timers", "unit.triggers"]
    assert o.guard.validate is False and o.guard.codec.claim_store is shared.blob_store()


async def test_dispatcher(shared: compose.Shared) -> None:
    d = compose.dispatcher(shared)
    assert isinstance(d, Dispatcher) and d.producer is shared.producer
    assert consumer_config(d.consumer) == ("unit.dispatcher", "flowlog-dispatcher",
                                           "read_committed", False)
    assert set(d.consumer._client._topics) == {"unit.execution-events"}
    assert len(shared.closers) == 1  # its admission, closed with the process


async def test_executor(shared: compose.Shared) -> None:
    e = compose.executor(shared, runner=None)  # type: ignore[arg-type]
    assert isinstance(e, Executor) and e.producer is shared.producer
    assert consumer_config(e.consumer) == ("unit.executor", "flowlog-executor",
                                           "read_committed", False)
    assert set(e.consumer._client._topics) == {"unit.node-tasks"}
    assert e.guard.validate is True


async def test_processor(shared: compose.Shared) -> None:
    p = compose.processor(shared)  # at_least_once, the default: the shared producer
    assert isinstance(p, Processor)
    assert consumer_config(p.consumer) == ("unit.processor", "flowlog-processor",
                                           "read_committed", False)
    assert p.txn_producer is None and p.producer is shared.producer
    shared.settings = shared.settings.model_copy(
        update={"processing_guarantee": "exactly_once"})
    p = compose.processor(shared)  # exactly_once: a transactional producer per partition
    assert p.producer is None
    producer = p.txn_producer("unit.processor-3")
    assert producer._txn_manager.transactional_id == "unit.processor-3"
    assert producer.client._client_id == "flowlog-unit.processor-3"
    reader = p.snapshot_reader()
    assert reader._group_id is None and reader._isolation_level == "read_committed"


@pytest.mark.parametrize(("store", "breakers"), [("local", "LocalBreakers"),
                                                 ("redis", "RedisBreakers"),
                                                 ("auto", "RedisBreakers")])
async def test_the_runner_gets_its_limits_from_the_root(store: str, breakers: str) -> None:
    s = Settings(topic_prefix="unit.", breaker_store=store,  # type: ignore[arg-type]
                 executor_rate_limits={"webhook": 5.0})
    sh = compose.Shared(s, kafka.producer(s))
    try:
        runner: Any = compose.default_runner(sh)
        limits = runner.limits
        assert type(limits.breakers).__name__ == breakers  # as FLOWLOG_BREAKER_STORE says
        assert limits.rate.rates == {"webhook": 5.0}
        assert limits.aclose in sh.closers  # the root closes its Redis clients ...
        assert runner._own_limits is False  # ... and the runner leaves them alone
        assert runner.gateway.limits is limits  # its HTTP calls go through the same limits
    finally:
        await sh.close()


async def test_a_bare_runner_builds_and_closes_its_own_limits() -> None:
    from flowlog.streams.executors.runner import TaskRunner

    runner = TaskRunner(Settings(breaker_store="local"))  # unit tests of the runner
    assert runner._own_limits is True
    assert type(runner.limits.breakers).__name__ == "LocalBreakers"
    await runner.aclose()


async def test_fetch_batching_settings_reach_both_clients() -> None:
    s = Settings(topic_prefix="unit.", consumer_fetch_min_bytes=4096,
                 consumer_fetch_max_wait_ms=7)
    consumer = kafka.group_consumer(s, "executor", ["unit.node-tasks"])
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (4096, 7)
    conf = rdkafka.consumer_config(s, "executor")
    assert (conf["fetch.min.bytes"], conf["fetch.wait.max.ms"]) == (4096, 7)
    default = kafka.group_consumer(Settings(), "executor", ["node-tasks"])
    assert (default._fetch_min_bytes, default._fetch_max_wait_ms) == (1, 500)  # Kafka's
