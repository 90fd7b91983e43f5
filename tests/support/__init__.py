"""Test helpers other suites import (`from tests.support.<module> import ...`).

fake_llm, fake_webhook, fake_vault, server: local HTTP servers standing in for outside
services; fixtures, tasks: pytest fixtures and node tasks for the executor suites;
runs: drive an execution with scripted inputs; scenarios: scripted runs of every example;
strategies: hypothesis strategies (random valid definitions and their runs); histories:
recorded and scripted histories of every example; record_histories: re-records
tests/fixtures/histories (`python -m tests.support.record_histories`); audit: write and
read histories on Kafka, run the audit projector; kafka_topics: read a topic, delete a
test's topics.
"""
