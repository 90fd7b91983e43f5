"""Dead letters on RabbitMQ (issue 13; docs/deadletters.md).

Reading order: `message` (what a dead letter carries, the ladder, the ids), `topology`
(exchanges and queues), `publisher` (execution-events → RabbitMQ, offsets committed after
the confirms), `bridge` (due dead letters → `RetryNodeRequested` on Kafka; the
`flowlog worker deadletters` process), `ops` (list, retry, discard for the CLI),
`metrics` (queue depths and the oldest dead letter's age).
"""
