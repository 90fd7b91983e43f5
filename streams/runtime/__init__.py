"""The engine's runtime: orchestrator, dispatcher (tasks and timers), executor, worker."""
