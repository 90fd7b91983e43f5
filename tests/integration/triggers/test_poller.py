"""Polling triggers against a real local HTTP source: a restart does not fire twice for
the same change; errors back off; content-hash mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI, Response
from flowlog.streams.triggers.poller import Poller, PollSource, detect, load_state

from flowlog.settings import Settings
from tests.integration.ingress.conftest import LiveServer
from tests.integration.ingress.hooks import read_topic
from tests.integration.triggers.conftest import Clock

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


class Source:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]
        self.fail = False
        self.app = FastAPI()

        @self.app.get("/items")
        async def items() -> Any:
            if self.fail:
                return Response(status_code=500)
            return {"data": self.items}


@pytest.fixture
async def source() -> AsyncIterator[tuple[Source, str]]:
    src = Source()
    server = LiveServer(src.app).start()
    try:
        yield src, server.url
    finally:
        server.stop()


def sources(url: str) -> list[PollSource]:
    return [
        PollSource.from_config("wf-poll", 1, 0, "default", {
            "url": f"{url}/items", "interval": "30s", "items": "response.data",
            "cursor": "item.id", "input": '{"id": item.id, "v": item.v}'}),
        PollSource.from_config("wf-poll", 1, 1, "default", {
            "url": f"{url}/items", "interval": "30s", "items": "response.data"}),
    ]


async def poller(settings: Settings, clock: Clock, url: str) -> Poller:
    p = Poller(settings, clock=clock)
    await p.start()
    p.sources = sources(url)
    return p


async def test_a_restart_does_not_fire_twice(
        sched_settings: Settings, source: tuple[Source, str]) -> None:
    src, url = source
    clock = Clock(T0)
    first = await poller(sched_settings, clock, url)
    assert await first.poll_due() == 3  # 2 items by cursor + 1 content change
    clock.now += timedelta(seconds=10)
    assert await first.poll_due() == 0  # not due yet
    await first.stop()

    second = await poller(sched_settings, clock, url)  # a restart: state from PostgreSQL
    clock.now += timedelta(seconds=31)
    assert await second.poll_due() == 0  # same content, same cursor: nothing again
    src.items.append({"id": 3, "v": "c"})
    clock.now += timedelta(seconds=31)
    assert await second.poll_due() == 2  # item 3 by cursor, and the new content hash
    await second.stop()
    triggers = await read_topic(sched_settings)
    assert len(triggers) == 5 and len({t["execution_id"] for t in triggers}) == 5
    keys = sorted(t["dedup_key"] for t in triggers)
    assert [k for k in keys if k.startswith("poll:0:")] == ["poll:0:1", "poll:0:2", "poll:0:3"]


async def test_errors_back_off_and_are_not_fatal(
        sched_settings: Settings, source: tuple[Source, str]) -> None:
    src, url = source
    src.fail = True
    clock = Clock(T0)
    p = await poller(sched_settings, clock, url)
    try:
        assert await p.poll_due() == 0
        state = await load_state(p.conn, p.sources[0])
        assert state["failures"] == 1 and state["next_at"] == T0 + timedelta(seconds=60)
        clock.now += timedelta(seconds=59)
        src.fail = False
        assert await p.poll_due() == 0  # still backing off
        clock.now += timedelta(seconds=2)
        assert await p.poll_due() == 3
        assert (await load_state(p.conn, p.sources[0]))["failures"] == 0
    finally:
        await p.stop()


def test_detect_is_pure_and_uses_the_stored_cursor() -> None:
    src = sources("http://x")[0]
    body = {"data": [{"id": 5, "v": "x"}, {"id": 7, "v": "y"}]}
    found = detect(src, body, "5", None)
    assert found.fire == [("poll:0:7", {"id": 7, "v": "y"})] and found.cursor == "7"
    hashed = detect(sources("http://x")[1], body, None, None)
    assert len(hashed.fire) == 1 and detect(sources("http://x")[1], body, None,
                                            hashed.content_hash).fire == []
