"""Projections: read models, analytics and the audit store, with replay and verify."""
