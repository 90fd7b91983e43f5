"""The read-only query API (``flowlog worker api``): workflows, executions, node runs,
events and state as of a seq, triggers, webhooks, schedules, analytics, lineage, live
status over Server-Sent Events and the dashboard. GET only; see docs/api.md."""
