"""The service manager on real processes: idempotent up, down, and clear set-up errors.

Each test runs its own instance on its own ports and state folder, so the shared services
the other tests use are never touched.
"""

from __future__ import annotations

import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flowlog.infra.services.base import ServiceError, pid_alive, port_open
from flowlog.infra.services.kafka import Kafka
from flowlog.infra.services.postgres import Postgres
from flowlog.infra.services.redis import Redis

from flowlog.settings import REPO_ROOT, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Under the repo (not /tmp/pytest-*, which is 0700): PostgreSQL runs as its own user.
    path = REPO_ROOT / ".state" / f"test-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_redis_up_is_idempotent_and_down_stops_it(state_dir: Path) -> None:
    svc = Redis(Settings(state_dir=state_dir, redis_port=free_port()))
    try:
        assert svc.up() == "started"
        pid = svc.pid()
        assert pid and svc.healthy()
        assert svc.up() == "running"
        assert svc.pid() == pid  # the second `up` changed nothing
    finally:
        assert svc.down() == "stopped now"
    assert not pid_alive(pid)
    assert not port_open("127.0.0.1", svc.port)
    assert svc.down() == "stopped"


def test_postgres_up_creates_user_and_database_and_is_idempotent(state_dir: Path) -> None:
    import psycopg

    settings = Settings(state_dir=state_dir, pg_port=free_port())
    svc = Postgres(settings)
    try:
        assert svc.up() == "started"
        with psycopg.connect(settings.pg_dsn) as conn:
            assert conn.execute("SELECT current_user, current_database()").fetchone() == (
                "flowlog", "flowlog")
        pid = svc.pid()
        assert svc.up() == "running" and svc.pid() == pid
    finally:
        svc.down()
    assert not port_open("127.0.0.1", settings.pg_port)


def test_a_taken_port_names_the_port_and_the_service(state_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        svc = Redis(Settings(state_dir=state_dir, redis_port=port))
        with pytest.raises(ServiceError) as err:
            svc.up()
        message = str(err.value)
        assert f"port {port}" in message and "redis" in message
        assert "FLOWLOG_" in message  # says what to do
        assert svc.pid() is None


def test_missing_java_says_so(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ServiceError, match="Java is missing"):
        Kafka(Settings(state_dir=state_dir, kafka_port=free_port())).up()


def test_a_failed_start_prints_the_log_tail_and_leaves_nothing_running(state_dir: Path) -> None:
    # An impossible heap makes the JVM exit at once, the way a broken install would.
    settings = Settings(state_dir=state_dir, kafka_port=free_port(),
                        kafka_controller_port=free_port(), kafka_heap="notasize")
    svc = Kafka(settings)
    with pytest.raises(ServiceError) as err:
        svc.up()
    message = str(err.value)
    assert "kafka did not become healthy" in message
    assert "Invalid" in message and "heap" in message  # the JVM's own words, from the log
    assert svc.pid() is None
    assert not port_open("127.0.0.1", settings.kafka_port)
