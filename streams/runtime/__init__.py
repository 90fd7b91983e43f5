"""The engine's runtime: processor, executor, worker (and the classic layout's orchestrator and
dispatcher).

If you are here to read the code, follow a trigger through the default layout
(`flowlog worker all` = ``processor`` + ``executor``):

1. `tools.trigger` (or the SDK, `flowlog.schemas.sdk`) publishes `TriggerReceived` to the
   ``triggers`` topic, keyed by execution id.
2. `processor.Processor` reads triggers, commands, node results (and fired timers of the
   classic layout) of its partitions and keeps one `processor_state.PartitionState` per
   partition (rebuilt from its latest snapshot plus the tail of ``execution-events`` on
   assignment). Per step and partition: `inputs.resolve_input` gives each input's terms
   (`policy.input_terms`) and definition, `flowlog.aggregates.records` turns the record into
   a domain input, `flowlog.aggregates.execution.decide` decides; the decision's events go
   out as ONE `ExecutionEventBatch` record on ``execution-events``, each `NodeScheduled` as
   a `NodeTaskIssued` on ``node-tasks`` (`taskrender`; secrets still as references), due
   timers fire from the state, queued executions are admitted (`admission`). Offsets are
   committed after the acks (`commits.Committer`, ``at_least_once``) or in the step's
   transaction (``exactly_once``).
3. `executor.Executor` reads ``node-tasks`` and runs each task through
   `flowlog.streams.executors` (tools, webhooks, agents); the outcome goes back as
   `NodeResultReported` on ``node-results`` (`records.result_record`) — step 2 again,
   until a terminal event.

The classic layout (opt-in) splits step 2 in two roles: `orchestrator.Orchestrator` decides
and writes only ``execution-events``; `dispatcher.Dispatcher` reads them and writes the
tasks, `TimerFired` on ``timers`` and admissions.

What each role decides about one input (the pinned version, whether the workflow accepts,
the admission queue, a duplicate or a gap, run or re-publish a task) is a pure function in
`policy`; the roles do the I/O around it.

Who builds what: `worker.Worker` runs the roles of a process; `compose` (the composition
root) builds every consumer, producer, guard, codec, admission and the task runner, and
hands them to the roles' constructors (`ports` names what a role uses of each); `kafka`
holds the client factories and topic setup. Around them: `registry` (every workflow
definition, followed from its topic), `commits` (the `Committer`, `commit_offsets`),
`inputs` (an input's terms, definition and domain input, for both deciding roles), `window` (the
finished-executions window both deciding roles keep), `histories` (a succeeding history,
built for tests and the rebuild benchmark), `taskrender`, `memory`,
`subworkflow`, `tools` (the shell side). The life of a trigger, with the guarantees at
each hop, is in docs/engine.md.
"""
