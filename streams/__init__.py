"""Faust stream agents: orchestrator, executors, timers, trigger sources."""
