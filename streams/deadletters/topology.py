"""The dead letters' exchanges and queues on RabbitMQ, declared idempotently.

    <p>            topic exchange: every dead letter enters here, routing key
                   ``<stage>.[<delay ms>.]<workflow>.<node_type>`` (message.routing_key)
    <p>.delay.<ms> quorum queue per ladder delay, bound to ``delay.<ms>.#``:
                   ``x-message-ttl`` = the delay, then dead-lettered (at-least-once) into
    <p>.due        fanout exchange → quorum queue ``<p>.due`` (also bound to ``due.#`` on
                   ``<p>``): what the bridge turns into retry commands
    <p>.parked     quorum queue bound to ``parked.#``: after the ladder, malformed
                   messages (with a reason header), waiting for an operator

``<p>`` is ``settings.deadletter_prefix`` (default ``<topic_prefix>dl``). Every queue is
durable and quorum (replicated where the cluster has nodes); messages are persistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    FieldValue,
)
from flowlog.streams.deadletters.message import DELAY, DUE, PARKED, all_delays_ms

from flowlog.settings import Settings


def prefix(settings: Settings) -> str:
    return settings.deadletter_prefix or f"{settings.topic_prefix}dl"


@dataclass(frozen=True)
class Names:
    exchange: str
    due_exchange: str
    due: str
    parked: str
    delay_prefix: str

    @classmethod
    def of(cls, settings: Settings) -> Names:
        p = prefix(settings)
        return cls(exchange=p, due_exchange=f"{p}.due", due=f"{p}.due", parked=f"{p}.parked",
                   delay_prefix=f"{p}.delay.")

    def delay(self, ms: int) -> str:
        return f"{self.delay_prefix}{ms}"


@dataclass
class Topology:
    names: Names
    exchange: AbstractExchange
    due: AbstractQueue
    parked: AbstractQueue
    delays: dict[int, AbstractQueue]

    def queues(self) -> dict[str, AbstractQueue]:
        """Every queue by its stage label (``due``, ``parked``, ``delay.<ms>``)."""
        out = {DUE: self.due, PARKED: self.parked}
        for ms, q in self.delays.items():
            out[f"{DELAY}.{ms}"] = q
        return out


_QUORUM: dict[str, FieldValue] = {"x-queue-type": "quorum"}


async def connect(settings: Settings) -> AbstractConnection:
    """A connection that says where it tried when RabbitMQ does not answer."""
    try:
        return await aio_pika.connect(settings.amqp_url, timeout=10,
                                             client_properties={"connection_name":
                                                                "flowlog-deadletters"})
    except Exception as exc:
        raise ConnectionError(
            f"RabbitMQ at {settings.rabbitmq_host}:{settings.rabbitmq_port} vhost "
            f"{settings.rabbitmq_vhost!r} does not answer ({exc}): start it with `make up` "
            f"or set FLOWLOG_RABBITMQ_HOST/PORT") from exc


async def declare(channel: AbstractChannel, settings: Settings) -> Topology:
    """Declare (idempotently) the exchanges and queues of `settings`' ladders."""
    n = Names.of(settings)
    ex = await channel.declare_exchange(n.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    due_ex = await channel.declare_exchange(n.due_exchange, aio_pika.ExchangeType.FANOUT,
                                            durable=True)
    due = await channel.declare_queue(n.due, durable=True, arguments=_QUORUM)
    await due.bind(due_ex)
    await due.bind(ex, routing_key=f"{DUE}.#")
    parked = await channel.declare_queue(n.parked, durable=True, arguments=_QUORUM)
    await parked.bind(ex, routing_key=f"{PARKED}.#")
    delays = {}
    for ms in all_delays_ms(settings.deadletter_ladder, settings.deadletter_ladders):
        args: dict[str, FieldValue] = {
            **_QUORUM, "x-message-ttl": ms, "x-dead-letter-exchange": n.due_exchange,
            # at-least-once dead-lettering (quorum queues, RabbitMQ 3.10+): an expired
            # message leaves only once the due queue confirmed it; needs reject-publish
            "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
        }
        q = await channel.declare_queue(n.delay(ms), durable=True, arguments=args)
        await q.bind(ex, routing_key=f"{DELAY}.{ms}.#")
        delays[ms] = q
    return Topology(n, ex, due, parked, delays)


async def delete(channel: AbstractChannel, settings: Settings) -> None:
    """Remove every queue and exchange of `settings` (tests clean up with it)."""
    n = Names.of(settings)
    for ms in all_delays_ms(settings.deadletter_ladder, settings.deadletter_ladders):
        await channel.queue_delete(n.delay(ms))
    await channel.queue_delete(n.due)
    await channel.queue_delete(n.parked)
    await channel.exchange_delete(n.due_exchange)
    await channel.exchange_delete(n.exchange)
