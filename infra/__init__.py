"""Starting the real services (Kafka, PostgreSQL, Redis, RabbitMQ) with and without Docker."""
