"""flowlog: an event-sourced stream-processing engine for AI-agent workflows on Kafka."""
