"""The ports of the roles: what a role needs of its collaborators, as protocols.

The composition root (`compose.py`) builds the adapters (aiokafka clients, the Redis
admission, the definitions follower, the decode guard) and hands them to the roles; unit
tests hand in fakes. Only the methods the roles call are named.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from flowlog.aggregates.definition import CompiledDefinition
from flowlog.streams.runtime.admission import Entry


class Producer(Protocol):
    """An (idempotent) producer: `send` hands a record over and returns its ack's future."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> Any: ...

    async def flush(self) -> None: ...


class Consumer(Protocol):
    """A consumer-group member with manual commits (aiokafka's `AIOKafkaConsumer`)."""

    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *partitions: Any, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[Any, list[Any]]: ...
    async def commit(self, offsets: Any = None) -> None: ...
    async def committed(self, partition: Any) -> int | None: ...
    def assignment(self) -> Any: ...
    def pause(self, *partitions: Any) -> None: ...
    def resume(self, *partitions: Any) -> None: ...
    def paused(self) -> Any: ...
    def seek(self, partition: Any, offset: int) -> None: ...
    async def beginning_offsets(self, partitions: Any) -> dict[Any, int]: ...


class Registry(Protocol):
    """The definitions a role reads (`registry.DefinitionRegistry`)."""

    @property
    def workflows(self) -> Mapping[str, Any]: ...

    def definition(self, workflow_id: str, version: int) -> CompiledDefinition | None: ...


class Definitions(Protocol):
    """The registry and its follower (`registry.RegistryFollower`): a role asks it to catch
    up when an input names a definition it does not hold yet."""

    @property
    def registry(self) -> Registry: ...

    async def catch_up(self, within: float = 10.0) -> bool: ...


class FlowControl(Protocol):
    """Admission (`admission.Admission`, Redis): each call returns the entries admitted now."""

    async def enqueue(self, entry: Entry, workflow_limit: int | None) -> list[Entry]: ...
    async def release(self, entry: Entry) -> list[Entry]: ...


#: Every committed record of one partition of a topic, from its first offset up to its end
#: offset when called (`kafka.read_partition` bound to the settings).
PartitionReader = Callable[[str, int], AsyncIterator[Any]]
