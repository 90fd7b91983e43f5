"""The engine benchmark's harness runs end to end (a few seconds at a low rate): worker
processes start, executions triggered through the SDK finish, topics are dropped. Checks
completion only, never timings (those are the benchmark's business, not a test's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowlog.settings import REPO_ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture
def bench_engine(kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("FLOWLOG_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import bench_engine

    return bench_engine


@pytest.mark.parametrize(("target", "processors"), [("engine", 1), ("engine", 0), ("raw", 0)],
                         ids=["engine", "engine-classic", "raw"])
def test_bench_step_runs_executions_to_the_end(bench_engine: Any, target: str,
                                               processors: int) -> None:
    be = bench_engine
    opts = be.Options(target=target, duration=3.0, drain=60.0, warmup=6,
                      layout=be.Layout(processors=processors))
    step = be.run_step(opts, 10)
    assert step.sent == 30
    assert step.finished == step.sent
    assert step.failed == 0
    assert set(step.cpu) >= {"machine", "bench (starter+observer)"}


def test_bench_leaves_no_topics(bench_engine: Any, kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    be = bench_engine
    before = set(AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics)
    be.run_step(be.Options(duration=1.0, drain=60.0, warmup=3), 5)
    after = set(AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics)
    assert not {t for t in after - before if t.startswith("bench.")}


def test_profile_summary_sorts_samples_into_categories(bench_engine: Any,
                                                        tmp_path: Path) -> None:
    be = bench_engine
    raw = tmp_path / "orchestrator-0.txt"
    raw.write_text(
        "run (asyncio/runners.py:190);Orchestrator._one (streams/runtime/orchestrator.py:201);"
        "Codec.encode (schemas/codec.py:146) 30\n"
        "run (asyncio/runners.py:190);decide (aggregates/execution/decide.py:59);"
        "uuid5 (uuid.py:728) 10\n"
        "run (asyncio/runners.py:190);AIOKafkaConnection.send (aiokafka/conn.py:423) 10\n"
        "run (asyncio/runners.py:190);EpollSelector.select (selectors.py:468) 50\n")
    summary = be.summarize_profile(raw, duration=1.0)
    assert summary["busy_samples"] == 50 and summary["idle_samples"] == 50
    assert summary["share_percent"] == {"encode (Avro)": 60.0, "ids (uuid5/uuid7)": 20.0,
                                        "Kafka client (aiokafka)": 20.0}
