"""The orchestrator's inputs (docs/events.md "Inputs"), as the domain sees them.

The classes are generated from the contract's declarations (`flowlog.schemas.events`, each
input's ``domain_forms``) into `_generated_inputs.py` by ``flowlog schemas generate``; this
module re-exports them. The streams layer decodes the Avro records and builds these
(`flowlog.aggregates.records`); the domain imports nothing of `flowlog.schemas` but its ids.
Every input has an `event_id`: the aggregate remembers the ids it has applied (causation
ids), so a redelivered input yields no events.
"""

from __future__ import annotations

from flowlog.aggregates.execution._generated_inputs import *  # noqa: F403 (the generated classes)
from flowlog.aggregates.execution._generated_inputs import INPUT_TYPES, Input

__all__ = ["INPUT_TYPES", "Input", *INPUT_TYPES]
