"""The event contract: Avro schemas, event types, serialization, topic catalog, producer SDK."""
