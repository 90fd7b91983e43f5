"""Test harness shared by every tier.

Services: a test that needs one asks for its fixture (``kafka_bootstrap``, ``pg_dsn``,
``redis_url``, ``amqp_url``). The fixture uses the service already answering where the
settings point; otherwise starts it through ``infra`` (as ``make up`` does); otherwise,
where a Docker engine answers, through testcontainers. Isolation: every test gets a
unique topic prefix (``settings``), its own PostgreSQL schema (``pg_schema``) and its
own topics (``new_topic``), so tests never see each other's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flowlog.infra.services.base import Service, ServiceError
from flowlog.infra.services.kafka import Kafka
from flowlog.infra.services.postgres import Postgres
from flowlog.infra.services.rabbitmq import RabbitMQ
from flowlog.infra.services.redis import Redis

from flowlog.settings import Settings

_containers: list[Any] = []


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _from_container(name: str) -> dict[str, str]:
    """Start `name` with testcontainers; returns FLOWLOG_* overrides that point at it."""
    if name == "kafka":
        from testcontainers.kafka import KafkaContainer

        c = KafkaContainer("apache/kafka:4.1.1").with_kraft()
        c.start()
        _containers.append(c)
        return {"FLOWLOG_KAFKA_BOOTSTRAP": c.get_bootstrap_server()}
    if name == "postgres":
        from testcontainers.postgres import PostgresContainer

        c = PostgresContainer("timescale/timescaledb:latest-pg15", username="flowlog",
                              password="flowlog", dbname="flowlog")
        c.start()
        _containers.append(c)
        return {"FLOWLOG_PG_HOST": c.get_container_host_ip(),
                "FLOWLOG_PG_PORT": str(c.get_exposed_port(5432))}
    if name == "redis":
        from testcontainers.redis import RedisContainer

        c = RedisContainer("redis:7")
        c.start()
        _containers.append(c)
        return {"FLOWLOG_REDIS_HOST": c.get_container_host_ip(),
                "FLOWLOG_REDIS_PORT": str(c.get_exposed_port(6379))}
    from testcontainers.rabbitmq import RabbitMqContainer

    c = RabbitMqContainer("rabbitmq:3.13-management", username="flowlog", password="flowlog")
    c.start()
    _containers.append(c)
    return {"FLOWLOG_RABBITMQ_HOST": c.get_container_host_ip(),
            "FLOWLOG_RABBITMQ_PORT": str(c.get_exposed_port(5672)),
            "FLOWLOG_RABBITMQ_VHOST": "/"}


_ready: dict[str, bool] = {}


def _ensure(svc: Service) -> None:
    if _ready.get(svc.name):
        return
    if not svc.healthy():
        try:
            svc.up()
        except ServiceError as exc:
            if not _docker_available():
                pytest.fail(f"{svc.name} is not running and could not be started: {exc}")
            os.environ.update(_from_container(svc.name))
    _ready[svc.name] = True


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for c in _containers:
        c.stop()


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings()


_TEST_PREFIXES: list[str] = []  # topic prefixes handed out this session
_KAFKA_USED: list[str] = []  # the bootstrap, once a test asked for the broker


@pytest.fixture(scope="session")
def kafka_bootstrap(base_settings: Settings) -> str:
    _ensure(Kafka(base_settings))
    _KAFKA_USED.append(Settings().bootstrap_servers)
    return Settings().bootstrap_servers


@pytest.fixture(scope="session", autouse=True)
def _delete_test_topics() -> Iterator[None]:
    """Delete the topics this session's tests made (prefixes `t<id>.`) at its end.

    A broker left with thousands of test partitions gets slower at everything: after a
    day of test runs (~6,000 partitions) the engine benchmark fell from ~1,000 to 550-750
    executions/s on this machine, until they were deleted.
    """
    yield
    if not _KAFKA_USED or not _TEST_PREFIXES:
        return
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": _KAFKA_USED[0]})
    try:
        topics = admin.list_topics(timeout=10).topics
    except Exception:
        return
    prefixes = tuple(_TEST_PREFIXES)
    doomed = [t for t in topics if t.startswith(prefixes)]
    for i in range(0, len(doomed), 500):
        for fut in admin.delete_topics(doomed[i:i + 500], operation_timeout=30).values():
            try:
                fut.result(timeout=60)
            except Exception:
                pass


@pytest.fixture(scope="session")
def pg_dsn(base_settings: Settings) -> str:
    _ensure(Postgres(base_settings))
    return Settings().pg_dsn


@pytest.fixture(scope="session")
def redis_url(base_settings: Settings) -> str:
    _ensure(Redis(base_settings))
    return Settings().redis_url


@pytest.fixture(scope="session")
def amqp_url(base_settings: Settings) -> str:
    _ensure(RabbitMQ(base_settings))
    return Settings().amqp_url


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(unique_id: str) -> Settings:
    """Settings with a topic prefix of this test's own (``t<id>.``), deleted at the end."""
    _TEST_PREFIXES.append(f"t{unique_id}.")
    return Settings(topic_prefix=f"t{unique_id}.")


@pytest.fixture
def new_topic(kafka_bootstrap: str, unique_id: str) -> Iterator[Callable[..., str]]:
    """Factory: ``new_topic("name", partitions=3)`` creates a topic only this test uses."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    created: list[str] = []

    def make(name: str = "topic", partitions: int = 1, **config: str) -> str:
        topic = f"t{unique_id}.{name}"
        futures = admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)]
        )
        futures[topic].result(timeout=30)
        created.append(topic)
        return topic

    yield make
    if created:
        for fut in admin.delete_topics(created).values():
            try:
                fut.result(timeout=30)
            except Exception:
                pass


@pytest.fixture
def pg_schema(pg_dsn: str, unique_id: str) -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    import psycopg

    schema = f"t_{unique_id}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


_TIERS = ("unit", "integration", "e2e", "faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with its tier from its folder (tests/unit -> unit, ...)."""
    for item in items:
        parts = item.path.parts
        for tier in _TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))
