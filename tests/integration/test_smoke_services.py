"""Smoke tests: each real service answers and round-trips data with the clients we use."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, Producer

from flowlog.settings import REPO_ROOT

N = 200


def _confluent_consume(bootstrap: str, topic: str, n: int, timeout: float = 30,
                       alive: Callable[[], bool] = lambda: True) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline and alive():
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is None:
                    got.append(msg.value())
    finally:
        consumer.close()
    return got


async def _aiokafka_consume(bootstrap: str, topic: str, n: int,
                            wait_s: float = 30) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap,
                                group_id=f"g-{uuid.uuid4()}", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    got: list[bytes] = []
    deadline = time.monotonic() + wait_s
    try:
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(r.value for r in records if r.value is not None)
    finally:
        await consumer.stop()
    return got


async def test_confluent_produce_aiokafka_consume(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("c2a", partitions=3)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    sent = [f"msg-{i}".encode() for i in range(N)]
    for i, value in enumerate(sent):
        producer.produce(topic, key=str(i % 7).encode(), value=value)
    assert producer.flush(30) == 0
    got = await _aiokafka_consume(kafka_bootstrap, topic, N)
    assert sorted(got) == sorted(sent)


async def test_aiokafka_produce_confluent_consume(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("a2c", partitions=3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all",
                                enable_idempotence=True)
    await producer.start()
    sent = [f"msg-{i}".encode() for i in range(N)]
    try:
        await asyncio.gather(*[
            producer.send_and_wait(topic, key=str(i % 7).encode(), value=v)
            for i, v in enumerate(sent)
        ])
    finally:
        await producer.stop()
    got = await asyncio.to_thread(_confluent_consume, kafka_bootstrap, topic, N)
    assert sorted(got) == sorted(sent)


def test_faust_agent_reads_one_topic_and_writes_another(
    kafka_bootstrap: str, new_topic: Callable[..., str], unique_id: str, tmp_path: os.PathLike
) -> None:
    source = new_topic("echo-in", partitions=2)
    sink = new_topic("echo-out", partitions=2)
    env = {**os.environ, "FLOWLOG_ECHO_IN": source, "FLOWLOG_ECHO_OUT": sink,
           "FLOWLOG_ECHO_APP": f"echo-{unique_id}", "FLOWLOG_ECHO_PARTITIONS": "2",
           "FLOWLOG_KAFKA_BOOTSTRAP": kafka_bootstrap}
    log = open(f"{tmp_path}/worker.log", "wb")
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", "benchmarks.faust_echo", "worker", "-l", "warn"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
    )
    try:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        sent = [f"hello-{i}".encode() for i in range(50)]
        for i, value in enumerate(sent):
            producer.produce(source, key=str(i).encode(), value=value)
        assert producer.flush(30) == 0
        got = _confluent_consume(kafka_bootstrap, sink, len(sent), timeout=90,
                                 alive=lambda: worker.poll() is None)
        if sorted(got) != sorted(sent):
            log.flush()
            pytest.fail(f"echo moved {len(got)}/{len(sent)}; worker log:\n"
                        + open(f"{tmp_path}/worker.log").read()[-3000:])
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


async def test_asyncpg_round_trip(pg_dsn: str, pg_schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(f'CREATE TABLE "{pg_schema}".t (id int primary key, doc jsonb)')
        await conn.executemany(f'INSERT INTO "{pg_schema}".t VALUES ($1, $2)',
                               [(i, f'{{"n": {i}}}') for i in range(100)])
        rows = await conn.fetch(f'SELECT id, doc->>\'n\' AS n FROM "{pg_schema}".t ORDER BY id')
        assert [(r["id"], int(r["n"])) for r in rows] == [(i, i) for i in range(100)]
    finally:
        await conn.close()


def test_psycopg_round_trip_with_copy(pg_dsn: str, pg_schema: str) -> None:
    import psycopg

    with psycopg.connect(pg_dsn) as conn:
        conn.execute(f'CREATE TABLE "{pg_schema}".t (id int primary key, name text)')
        with conn.cursor().copy(f'COPY "{pg_schema}".t (id, name) FROM STDIN') as copy:
            for i in range(100):
                copy.write_row((i, f"n{i}"))
        conn.commit()
        count, total = conn.execute(f'SELECT count(*), sum(id) FROM "{pg_schema}".t').fetchone()
        assert (count, total) == (100, sum(range(100)))


async def test_redis_round_trip(redis_url: str, unique_id: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        key = f"test:{unique_id}"
        await client.set(key, "v", ex=60)
        assert await client.get(key) == b"v"
        assert await client.incr(f"{key}:n") == 1
        await client.delete(key, f"{key}:n")
    finally:
        await client.aclose()


async def test_rabbitmq_publish_with_confirms_then_consume(amqp_url: str, unique_id: str) -> None:
    import aio_pika

    conn = await aio_pika.connect_robust(amqp_url)
    try:
        channel = await conn.channel(publisher_confirms=True)
        queue = await channel.declare_queue(f"test-{unique_id}", durable=True)
        for i in range(20):
            # With publisher confirms, publish() returns only once the broker confirmed.
            confirmation = await channel.default_exchange.publish(
                aio_pika.Message(body=f"m{i}".encode(),
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue.name,
            )
            assert confirmation is not None
        got = []
        async with queue.iterator() as it:
            async for message in it:
                async with message.process():
                    got.append(message.body.decode())
                if len(got) == 20:
                    break
        assert got == [f"m{i}" for i in range(20)]
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await conn.close()
