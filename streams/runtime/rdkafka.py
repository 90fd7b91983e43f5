"""confluent-kafka (librdkafka) behind the roles' ports: `RdConsumer` and `RdProducer`.

Opt-in (`FLOWLOG_KAFKA_CLIENT=confluent`; the composition root picks them for the
orchestrator, dispatcher and executor). They keep aiokafka's semantics as the roles rely on
them (`ports.Consumer`, `ports.Producer`), so no role changes:

* `getmany` returns ``{aiokafka TopicPartition: [records]}``; a record has ``topic``,
  ``partition``, ``offset``, ``key``, ``value``, ``headers`` (a tuple of (str, bytes)) and
  ``timestamp`` (ms), like aiokafka's `ConsumerRecord`.
* Consumer group with the **range** assignor (eager: every rebalance revokes all, then
  assigns all, as aiokafka does), so a member holds the same partition numbers of every
  input topic. librdkafka calls its rebalance callbacks from inside `consume`, which runs in
  the consumer's own thread: the callback hands the listener's coroutine
  (`on_partitions_revoked` / `on_partitions_assigned`) to the event loop and blocks that
  thread until it has finished, so consumption goes on only after it (as aiokafka awaits
  its listener). During the callback `assignment()` still names the revoked partitions (a
  revocation's commits pass the `Committer`'s filter), and a `seek` made by
  `on_partitions_assigned` becomes the assignment's start offset (librdkafka cannot seek a
  partition before it is assigned).
* Every blocking call on the librdkafka consumer (consume, commit, committed, offsets,
  close) runs in that one thread, as in a synchronous librdkafka program: a commit made
  from another thread while the consume thread sits in a rebalance callback never returns
  (tried: it hung for 20 s), so while the thread waits for a listener it runs the calls the
  listener makes (the orchestrator's revocation commits through its `Committer`). An idle
  poll waits in slices of 50 ms, running queued calls in between (a commit waits at most
  that long behind an idle poll).
* Manual commits only (`enable.auto.commit=false`), of explicit offsets, synchronous for
  the caller; errors surface as aiokafka's: `CommitFailedError` (the
  group rebalanced: rebalance in progress, illegal generation, unknown member, assignment
  lost), `IllegalStateError` (librdkafka's local state errors), any other as a
  `KafkaError` (retriable: the coordinator moved, a timeout) — what `commits.commit_offsets`
  sorts into "lost" and "not made".
* `pause`/`resume`/`paused`; records of a paused partition that librdkafka had already
  handed over are held back here and returned after `resume` (aiokafka keeps them
  buffered the same way); `seek` drops them.
* Isolation level from the settings (read_committed by default).

`RdProducer`: idempotent, acks=all; `send` returns an asyncio future of the delivery
report. A thread serves librdkafka's delivery reports; reports reach the loop in bunches
(one `call_soon_threadsafe` per bunch, not per record). Headers pass through. No
transactions (the processor role stays on aiokafka).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Producer
from confluent_kafka import KafkaError as RdError
from confluent_kafka import TopicPartition as RdTopicPartition

from flowlog.settings import Settings

log = logging.getLogger(__name__)

#: librdkafka errors that mean "the group moved on": aiokafka's CommitFailedError
_REBALANCED = {RdError.REBALANCE_IN_PROGRESS, RdError.ILLEGAL_GENERATION,
               RdError.UNKNOWN_MEMBER_ID, RdError.FENCED_INSTANCE_ID,
               RdError._ASSIGNMENT_LOST}
_CALL_TIMEOUT_S = 30.0


class RdKafkaError(KafkaError):
    """A librdkafka error as an aiokafka `KafkaError` (``retriable`` as librdkafka says)."""

    def __init__(self, err: Any, what: str) -> None:
        super().__init__(f"{what}: {err}")
        self.error = err
        self.retriable = bool(err.retriable()) if hasattr(err, "retriable") else False


def _commit_error(err: Any, what: str) -> Exception:
    code = err.code()
    if code in _REBALANCED:
        return CommitFailedError(f"{what}: {err}")
    if code == RdError._STATE:
        return IllegalStateError(f"{what}: {err}")
    return RdKafkaError(err, what)


class Record:
    """One consumed record with aiokafka's `ConsumerRecord` attributes the roles read."""

    __slots__ = ("headers", "key", "offset", "partition", "timestamp", "timestamp_type",
                 "topic", "value")

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: tuple[tuple[str, bytes], ...],
                 timestamp: tuple[int, int]) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp_type, self.timestamp = timestamp

    def __repr__(self) -> str:
        return f"Record({self.topic}[{self.partition}]@{self.offset})"


def consumer_config(settings: Settings, group: str, **overrides: Any) -> dict[str, Any]:
    """The librdkafka configuration of a role's group member (as `kafka.group_consumer`)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.topic_prefix + group,
        "client.id": f"flowlog-{group}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "isolation.level": settings.kafka_isolation_level,
        "session.timeout.ms": settings.consumer_session_timeout_ms,
        "heartbeat.interval.ms": 2_000,
        # also librdkafka's rebalance timeout; aiokafka's max_poll_interval_ms default
        "max.poll.interval.ms": 300_000,
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "fetch.min.bytes": settings.consumer_fetch_min_bytes,
        "fetch.wait.max.ms": settings.consumer_fetch_max_wait_ms,
        "logger": logging.getLogger("flowlog.rdkafka"),
    }
    conf.update(overrides)
    return conf


def producer_config(settings: Settings, client_id: str = "flowlog-worker",
                    **overrides: Any) -> dict[str, Any]:
    """Idempotent, acks=all, murmur2 like aiokafka and the SDK (as `kafka.producer`)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.producer_linger_ms,
        "partitioner": "murmur2_random",
        "message.max.bytes": 16 * 1024 * 1024,
        "message.timeout.ms": 60_000,
        "logger": logging.getLogger("flowlog.rdkafka"),
    }
    conf.update(overrides)
    return conf


class RdConsumer:
    """A consumer-group member (see the module's text); built by `compose` when
    `FLOWLOG_KAFKA_CLIENT=confluent`. ``conf``: librdkafka configuration."""

    def __init__(self, conf: dict[str, Any], *topics: str,
                 max_poll_records: int = 500) -> None:
        self.conf = conf
        self.topics: list[str] = list(topics)
        self.listener: Any = None
        self.max_poll_records = max_poll_records
        self._consumer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # every blocking call on the consumer runs here (librdkafka's rebalance callbacks too)
        self._worker = _Owner(f"rdkafka-{conf.get('client.id', 'consumer')}")
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._held: dict[TopicPartition, list[Record]] = {}  # fetched while paused
        self._assigning = False
        self._start_at: dict[TopicPartition, int] = {}  # seeks made while assigning
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------
    def subscribe(self, topics: Any = (), pattern: Any = None, listener: Any = None) -> None:
        if pattern is not None:
            raise ValueError("RdConsumer.subscribe: topic patterns are not supported; "
                             "name the topics")
        self.topics = list(topics)
        self.listener = listener
        if self._consumer is not None:
            self._consumer.subscribe(self.topics, on_assign=self._on_assign,
                                     on_revoke=self._on_revoke)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self.conf)
        # fails here, not at the first poll, when no broker answers
        await self._call(self._consumer.list_topics, None, 30)
        if self.topics:
            self._consumer.subscribe(self.topics, on_assign=self._on_assign,
                                     on_revoke=self._on_revoke)

    async def stop(self) -> None:
        """Leave the group (the revocation listener runs first, as with aiokafka)."""
        if self._consumer is None or self._closed:
            return
        try:
            await self._call(self._close)
        finally:
            self._worker.stop()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()

    # --- consuming -----------------------------------------------------------------------
    def _tp(self, topic: str, partition: int) -> TopicPartition:
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp

    async def getmany(self, *partitions: Any, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        """Records by partition, as aiokafka's `getmany` (at most ``max_records``)."""
        limit = max_records or self.max_poll_records
        wanted = set(partitions) if partitions else None
        out = self._take_held(wanted, limit)
        if out:
            return out
        msgs = await self._call(self._consume, limit, max(timeout_ms, 0) / 1000)
        tp_of = self._tp
        paused = self._paused
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.fatal():
                    raise RdKafkaError(err, "consume")
                log.warning("rdkafka consumer: %s", err)
                continue
            tp = tp_of(m.topic(), m.partition())
            rec = Record(tp.topic, tp.partition, m.offset(), m.key(), m.value(),
                         tuple(m.headers() or ()), m.timestamp())
            if tp in paused or (wanted is not None and tp not in wanted):
                self._held.setdefault(tp, []).append(rec)
                continue
            batch = out.get(tp)
            if batch is None:
                out[tp] = [rec]
            else:
                batch.append(rec)
        return out

    def _call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` in the consumer's thread."""
        return self._worker.submit(asyncio.get_running_loop(), fn, *args)

    def _consume(self, limit: int, timeout: float) -> list[Any]:
        """What is there now; else wait up to ``timeout`` for the first record and return
        it with whatever came with it (as aiokafka's getmany: no waiting to fill a batch)."""
        if self._closed:
            return []
        c = self._consumer
        msgs = c.consume(num_messages=limit, timeout=0)
        if msgs or timeout <= 0:
            return list(msgs)
        deadline = time.monotonic() + timeout
        while True:
            self._worker.run_pending()
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return []
            first = c.poll(min(left, 0.05))
            if first is not None:
                return [first, *c.consume(num_messages=limit - 1, timeout=0)] if limit > 1 \
                    else [first]

    def _take_held(self, wanted: set[Any] | None, limit: int) -> dict[TopicPartition, list[Any]]:
        out: dict[TopicPartition, list[Any]] = {}
        for tp in list(self._held):
            if tp in self._paused or (wanted is not None and tp not in wanted) or limit <= 0:
                continue
            recs = self._held.pop(tp)
            out[tp], rest = recs[:limit], recs[limit:]
            if rest:
                self._held[tp] = rest
            limit -= len(out[tp])
        return out

    # --- rebalance: librdkafka's callbacks, in the consume thread -------------------------
    def _on_assign(self, consumer: Any, parts: list[Any]) -> None:
        tps = [self._tp(p.topic, p.partition) for p in parts]
        self._assigned = set(tps)
        self._start_at = {}
        self._assigning = True
        try:
            self._await_listener("on_partitions_assigned", set(tps))
        finally:
            self._assigning = False
        consumer.assign([RdTopicPartition(tp.topic, tp.partition,
                                          self._start_at.get(tp, OFFSET_INVALID))
                         for tp in tps])
        paused = [RdTopicPartition(tp.topic, tp.partition) for tp in self._paused & set(tps)]
        if paused:
            consumer.pause(paused)
        log.debug("rdkafka consumer %s: assigned %s", self.conf.get("group.id"), tps)

    def _on_revoke(self, consumer: Any, parts: list[Any]) -> None:
        tps = {self._tp(p.topic, p.partition) for p in parts}
        try:
            self._await_listener("on_partitions_revoked", tps)
        finally:
            self._assigned -= tps
            self._paused -= tps
            for tp in tps:
                self._held.pop(tp, None)
            consumer.unassign()

    def _await_listener(self, name: str, tps: set[TopicPartition]) -> None:
        """Run the listener's ``name`` on the loop; this (consume) thread waits for it."""
        if self.listener is None or self._loop is None or self._loop.is_closed():
            return
        fut = asyncio.run_coroutine_threadsafe(_listen(getattr(self.listener, name), tps),
                                               self._loop)
        self._worker.serve_until(fut, self._loop)  # runs the listener's commits meanwhile
        try:
            fut.result(timeout=0)
        except Exception:
            log.exception("rdkafka consumer: %s failed", name)

    # --- offsets --------------------------------------------------------------------------
    async def commit(self, offsets: Any = None) -> None:
        """Commit ``offsets`` ({tp: offset or OffsetAndMetadata}; None: the positions),
        synchronously for the caller; errors as aiokafka's (see the module's text)."""
        if offsets is None:
            await self._call(self._commit, None)
            return
        parts = []
        for tp, o in offsets.items():
            offset = o if isinstance(o, int) else o.offset
            meta = "" if isinstance(o, int) else (o.metadata or "")
            parts.append(RdTopicPartition(tp.topic, tp.partition, offset, metadata=meta)
                         if meta else RdTopicPartition(tp.topic, tp.partition, offset))
        if parts:
            await self._call(self._commit, parts)

    def _commit(self, parts: list[Any] | None) -> None:
        try:
            if parts is None:
                result = self._consumer.commit(asynchronous=False)
            else:
                result = self._consumer.commit(offsets=parts, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() == RdError._NO_OFFSET:
                return
            raise _commit_error(err, "commit") from exc
        for p in result or ():
            if p.error is not None:
                raise _commit_error(p.error, f"commit of {p.topic}[{p.partition}]")

    async def committed(self, partition: Any) -> int | None:
        """The group's committed offset of ``partition`` (None: none committed)."""
        parts = await self._call(
            self._consumer.committed, [RdTopicPartition(partition.topic, partition.partition)],
            _CALL_TIMEOUT_S)
        if parts[0].error is not None:
            raise _commit_error(parts[0].error, "committed")
        offset = parts[0].offset
        return int(offset) if offset >= 0 else None

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def pause(self, *partitions: Any) -> None:
        mine = [tp for tp in partitions if tp in self._assigned]
        self._paused.update(mine)
        if mine and not self._assigning:
            self._consumer.pause([RdTopicPartition(tp.topic, tp.partition) for tp in mine])

    def resume(self, *partitions: Any) -> None:
        mine = [tp for tp in partitions if tp in self._paused]
        self._paused.difference_update(mine)
        if mine and not self._assigning:
            self._consumer.resume([RdTopicPartition(tp.topic, tp.partition) for tp in mine])

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def seek(self, partition: Any, offset: int) -> None:
        """The next record of ``partition`` is at ``offset``."""
        tp = self._tp(partition.topic, partition.partition)
        self._held.pop(tp, None)
        if self._assigning:  # the assignment starts there (librdkafka seeks assigned only)
            self._start_at[tp] = offset
            return
        try:
            self._consumer.seek(RdTopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            raise IllegalStateError(f"seek {tp} to {offset}: {exc.args[0]}") from exc

    async def position(self, partition: Any) -> int:
        """The offset of the next record returned for ``partition``."""
        tp = self._tp(partition.topic, partition.partition)
        if tp in self._start_at and self._assigning:
            return self._start_at[tp]
        held = self._held.get(tp)
        if held:
            return held[0].offset
        pos = self._consumer.position([RdTopicPartition(tp.topic, tp.partition)])[0].offset
        if pos >= 0:
            return int(pos)
        committed = await self.committed(tp)
        if committed is not None:
            return committed
        return (await self.beginning_offsets([tp]))[tp]

    async def beginning_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
        return {tp: lo for tp, (lo, _) in (await self._watermarks(partitions)).items()}

    async def end_offsets(self, partitions: Any) -> dict[TopicPartition, int]:
        """The end offsets (the last stable offset under read_committed, as aiokafka)."""
        return {tp: hi for tp, (_, hi) in (await self._watermarks(partitions)).items()}

    async def _watermarks(self, partitions: Iterable[Any]) -> dict[TopicPartition, tuple[int, int]]:
        tps = [self._tp(p.topic, p.partition) for p in partitions]

        def query() -> dict[TopicPartition, tuple[int, int]]:
            out = {}
            for tp in tps:
                lo, hi = self._consumer.get_watermark_offsets(
                    RdTopicPartition(tp.topic, tp.partition), timeout=_CALL_TIMEOUT_S,
                    cached=False)
                out[tp] = (int(lo), int(hi))
            return out

        return await self._call(query)


async def _listen(fn: Callable[..., Any], arg: Any) -> None:
    result = fn(arg)
    if isinstance(result, Awaitable):
        await result


class _Owner:
    """The one thread that calls the librdkafka consumer: runs submitted calls in order,
    and, inside a rebalance callback, the calls the listener makes while it is awaited."""

    _WAKE = object()

    def __init__(self, name: str) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any],
               *args: Any) -> asyncio.Future[Any]:
        fut = loop.create_future()
        self._q.put((fn, args, fut, loop))
        return fut

    def stop(self) -> None:
        self._q.put(None)

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if item is not self._WAKE:
                self._do(item)

    def run_pending(self) -> None:
        """Run the calls queued now (from inside a long call of this thread)."""
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._q.put(None)  # the stop, after the current call
                return
            if item is not self._WAKE:
                self._do(item)

    def serve_until(self, done: concurrent.futures.Future[Any],
                    loop: asyncio.AbstractEventLoop) -> None:
        """Run queued calls until ``done`` (a listener on the loop) has finished."""
        done.add_done_callback(lambda _: self._q.put(self._WAKE))
        while not done.done():
            try:
                item = self._q.get(timeout=1.0)
            except queue.Empty:
                if loop.is_closed():
                    log.warning("rdkafka consumer: the loop closed during a rebalance")
                    return
                continue
            if item is None:
                self._q.put(None)
                time.sleep(0.01)  # the stop waits until the listener is done
            elif item is not self._WAKE:
                self._do(item)

    @staticmethod
    def _do(item: tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any],
                        asyncio.AbstractEventLoop]) -> None:
        fn, args, fut, loop = item
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the caller on the loop
            _settle_soon(loop, fut, None, exc)
        else:
            _settle_soon(loop, fut, result, None)


def _settle_soon(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any,
                 exc: BaseException | None) -> None:
    def settle() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass


class RdProducer:
    """librdkafka's producer behind asyncio: ``await send(...)`` returns the future of the
    record's delivery report (as aiokafka's `send`). ``conf``: librdkafka configuration."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf
        self._producer: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: collections.deque[tuple[asyncio.Future[Any], Any, Any]] = (
            collections.deque())
        self._wake_pending = False
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self.conf)
        await asyncio.to_thread(self._producer.list_topics, None, 30)
        self._thread = threading.Thread(target=self._serve, daemon=True,
                                        name=f"rdkafka-{self.conf.get('client.id')}-reports")
        self._thread.start()

    async def stop(self) -> None:
        if self._producer is None:
            return
        try:
            await self.flush()
        finally:
            self._halt.set()
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join, 5)

    def _serve(self) -> None:
        while not self._halt.is_set():
            self._producer.poll(0.05)

    def _report(self, fut: asyncio.Future[Any], err: Any, msg: Any) -> None:
        # in librdkafka's poll (the serving thread, or flush): one wake-up of the loop per
        # bunch of reports; `_settle` clears the flag before it drains, so none is missed
        self._reports.append((fut, err, msg))
        if not self._wake_pending:
            self._wake_pending = True
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._settle)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _settle(self) -> None:
        self._wake_pending = False
        reports = self._reports
        while reports:
            fut, err, msg = reports.popleft()
            if fut.done():
                continue
            if err is not None:
                fut.set_exception(RdKafkaError(err, f"delivery to {msg.topic()}"))
            else:
                fut.set_result(msg)

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None,
                   headers: Any = None) -> asyncio.Future[Any]:
        """Hand one record over; returns the future of its delivery (the confluent
        `Message`, or a `KafkaError`). Waits while librdkafka's queue is full."""
        assert self._loop is not None, "start the producer first"
        fut = self._loop.create_future()
        kw: dict[str, Any] = {}
        if partition is not None:
            kw["partition"] = partition
        if timestamp_ms is not None:
            kw["timestamp"] = timestamp_ms
        if headers:
            kw["headers"] = list(headers)
        report = self._report
        while True:
            try:
                self._producer.produce(topic, value, key,
                                       on_delivery=lambda err, msg: report(fut, err, msg),
                                       **kw)
                return fut
            except BufferError:
                await asyncio.sleep(0.005)  # the serving thread drains the queue

    async def flush(self) -> None:
        """Until every record handed over is acknowledged (or failed)."""
        left = await asyncio.to_thread(self._producer.flush, _CALL_TIMEOUT_S * 4)
        if left:
            raise KafkaError(f"flush: {left} records not delivered within "
                             f"{_CALL_TIMEOUT_S * 4:.0f} s")


def group_consumer(settings: Settings, group: str, topics: list[str],
                   **overrides: Any) -> RdConsumer:
    """A role's group member on librdkafka (as `kafka.group_consumer` on aiokafka)."""
    return RdConsumer(consumer_config(settings, group, **overrides), *topics,
                      max_poll_records=settings.max_poll_records)


def producer(settings: Settings, client_id: str = "flowlog-worker") -> RdProducer:
    """The process's idempotent producer on librdkafka (as `kafka.producer`)."""
    return RdProducer(producer_config(settings, client_id))
