"""The smallest real pipeline: a Faust agent that reads one topic and writes another.

Used by the smoke tests, by the Kafka benchmark (Faust's own overhead on this machine)
Lives in benchmarks/ (Faust is an extra, `pip install -e .[faust]`: no engine role uses it).
Run it as a worker from the repository root:

    FLOWLOG_ECHO_IN=a FLOWLOG_ECHO_OUT=b faust -A benchmarks.faust_echo worker
"""

from __future__ import annotations

import os
from typing import Any

import faust

from flowlog.settings import get_settings

_settings = get_settings()
_prefix = _settings.topic_prefix
_datadir = _settings.state_dir / "faust" / os.environ.get("FLOWLOG_ECHO_APP", "echo")
_datadir.parent.mkdir(parents=True, exist_ok=True)

app = faust.App(
    os.environ.get("FLOWLOG_ECHO_APP", "flowlog-echo"),
    broker=f"kafka://{_settings.bootstrap_servers}",
    store="memory://",
    datadir=str(_datadir),
    topic_partitions=int(os.environ.get("FLOWLOG_ECHO_PARTITIONS", "4")),
    topic_allow_declare=True,
    value_serializer="raw",
    key_serializer="raw",
    web_enabled=False,
    broker_commit_every=1000,
    producer_linger_ms=5,
    consumer_auto_offset_reset="earliest",
)

source = app.topic(os.environ.get("FLOWLOG_ECHO_IN", f"{_prefix}echo-in"))
sink = app.topic(os.environ.get("FLOWLOG_ECHO_OUT", f"{_prefix}echo-out"))


@app.agent(source, concurrency=1)
async def echo(stream: Any) -> None:
    """Forward every record unchanged, keeping its key (so partitions line up)."""
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)
