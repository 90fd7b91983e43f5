"""The read-only query API and the ingress apps that only publish events."""
