"""Database migrations (alembic): the read models', analytics' and ingress tables.

Apply with ``flowlog db migrate`` (``make up`` does it too). A released revision is never
edited: change the schema with a new revision. Each area (projections, ingress, dead
letters) may add revisions; they all descend from ``0001_base``; ``migrate`` upgrades to
every head, so areas developed side by side need no ordering between them.
"""
