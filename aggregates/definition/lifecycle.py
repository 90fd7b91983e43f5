"""A workflow's lifecycle as one pure function: the status after a definition event.

draft (defined, not yet active) → active ⇄ paused → archived (final). Updates add a
version and keep the status; an archived workflow takes no change but a repeated archive.
Every reader and writer of definition events uses this one function — the
`WorkflowDefinition` aggregate (and so the projections), the engine's registry and
`flowlog workflows apply` — so they cannot disagree on what a workflow accepts.
"""

from __future__ import annotations

from flowlog.aggregates.errors import InvalidTransition

EVENTS = ("WorkflowDefined", "WorkflowUpdated", "WorkflowActivated", "WorkflowPaused",
          "WorkflowArchived")
_ACTION = {"WorkflowDefined": "define", "WorkflowUpdated": "update",
           "WorkflowActivated": "activate", "WorkflowPaused": "pause",
           "WorkflowArchived": "archive"}
_TO = {"WorkflowActivated": "active", "WorkflowPaused": "paused",
       "WorkflowArchived": "archived"}


def transition(status: str | None, event_type: str, workflow_id: str = "") -> str:
    """The status after ``event_type`` given the current ``status`` (None: not defined yet).

    Raises `InvalidTransition` (naming the workflow, what was asked and what to do) when the
    lifecycle forbids it.
    """
    name = f"workflow {workflow_id!r}" if workflow_id else "the workflow"
    if event_type not in _ACTION:
        raise InvalidTransition(f"{event_type} is not a definition event; use one of "
                                f"{', '.join(EVENTS)}")
    if event_type == "WorkflowDefined":
        if status is not None:
            raise InvalidTransition(f"{name} is already defined: publish WorkflowUpdated")
        return "draft"
    if status is None:
        raise InvalidTransition(f"{name} is not defined: cannot {_ACTION[event_type]} it; "
                                "define it first (flowlog workflows apply FILE)")
    if status == "archived" and event_type != "WorkflowArchived":
        raise InvalidTransition(f"{name} is archived: cannot {_ACTION[event_type]} it; "
                                "define a new workflow under another id")
    return _TO.get(event_type, status)
