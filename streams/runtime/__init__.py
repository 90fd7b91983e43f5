"""The engine's runtime: orchestrator, dispatcher (tasks and timers), executor, worker.

If you are here to read the code, follow a trigger:

1. `tools.trigger` (or the SDK, `flowlog.schemas.sdk`) publishes `TriggerReceived` to the
   ``triggers`` topic, keyed by execution id.
2. `orchestrator.Orchestrator` reads triggers, commands, node results and fired timers of
   its partitions; `flowlog.aggregates.records` turns each record into a domain input;
   `flowlog.aggregates.execution.decide` decides; the decision's events go out as ONE
   `ExecutionEventBatch` record on ``execution-events``; `commits.Committer` commits the
   inputs once the batch is acknowledged. State per partition is rebuilt from
   ``execution-events`` on assignment (``_load``). Its rules per input: `policy.input_terms`.
3. `dispatcher.Dispatcher` (role ``timers``) reads ``execution-events``: each
   `NodeScheduled` becomes a `NodeTaskIssued` on ``node-tasks`` (config rendered, secrets
   still as references, built by `records.task_record`); armed timers fire as
   `TimerFired` on ``timers``; queued executions are admitted (`admission`).
4. `executor.Executor` reads ``node-tasks`` and runs each task through
   `flowlog.streams.executors` (tools, webhooks, agents); the outcome goes back as
   `NodeResultReported` on ``node-results`` (`records.result_record`) — step 2 again,
   until a terminal event.

What each role decides about one input (the pinned version, whether the workflow accepts,
the admission queue, a duplicate or a gap, run or re-publish a task) is a pure function in
`policy`; the roles do the I/O around it.

Who builds what: `worker.Worker` runs the roles of a process; `compose` (the composition
root) builds every consumer, producer, guard, codec, admission and the task runner, and
hands them to the roles' constructors (`ports` names what a role uses of each); `kafka`
holds the client factories and topic setup. Around them: `registry` (every workflow
definition, followed from its topic), `commits` (the `Committer`, `commit_offsets`),
`processor` + `processor_state` (the opt-in transactional role), `window` (the
finished-executions window both deciding roles keep), `histories` (a succeeding history,
built for tests and the rebuild benchmark), `taskrender`, `memory`,
`subworkflow`, `tools` (the shell side). The life of a trigger, with the guarantees at
each hop, is in docs/engine.md.
"""
