"""`flowlog up|down|status|settings`: the local services (see infra/services.py)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
