"""The audit store and the replay/audit operations: history, time travel, diff, what-if,
lineage and the determinism check (`operations` is the module the query API calls)."""
