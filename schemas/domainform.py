"""How an event type of the contract looks in the domain (the second half of its declaration).

Every event type is declared once, as a pydantic model in `events.py` /
`execution_events.py`. A model whose type the domain (`flowlog.aggregates.execution`) uses
also names its domain forms in the class variable ``domain_forms``: an execution event
(``kind="event"``, a frozen dataclass of `aggregates/execution/_generated_events.py`) and/or
an orchestrator input (``kind="input"``, `aggregates/execution/_generated_inputs.py`).
``flowlog schemas generate`` writes those modules from the models plus these forms, and
`flowlog.aggregates.records` maps wire ⇄ domain from the same forms (`domaingen.domain_specs`).

A form states only where the domain differs from the wire; everything else (names, order
of the body, optionality, types) follows from the model. Plain data: no pydantic here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class DomainField:
    """One domain field that differs from its wire field.

    ``type`` is the domain annotation (source text); ``default`` a literal default, or
    ``factory`` the name of a builtin that makes it (``"dict"``). A domain default where the
    wire has none means the domain accepts the field absent (hand-built inputs in tests and
    recorded histories); the wire still requires it.
    """

    type: str | None = None
    default: Any = NO_DEFAULT
    factory: str | None = None


@dataclass(frozen=True, eq=False)
class DomainForm:
    """The domain form of one event type.

    * ``kind``: ``"event"`` (execution event: every field required, the full envelope) or
      ``"input"`` (orchestrator input: wire defaults kept, only ``envelope`` of the envelope).
    * ``envelope``: the envelope fields the domain keeps, in domain order (they come first).
    * ``omit``: body fields the domain leaves out (with the reason in a comment where declared).
    * ``order``: the full domain field order, when it is not ``envelope`` + body (then the
      envelope fields it names are the ones kept).
    * ``fields``: per-field differences (`DomainField`).
    * ``doc``: the domain class's docstring (default: the model's own).
    """

    kind: Literal["event", "input"]
    envelope: tuple[str, ...]
    omit: tuple[str, ...] = ()
    order: tuple[str, ...] | None = None
    fields: Mapping[str, DomainField] = field(default_factory=dict)
    doc: str | None = None


#: The envelope of an execution event in the domain (``seq`` second, and required there).
EVENT_ENVELOPE = ("event_id", "seq", "occurred_at", "execution_id", "workflow_id",
                  "workflow_version", "correlation_id", "causation_id", "tenant")

#: Every execution event's domain form: the wire's ``seq`` is nullable (the envelope is shared
#: with producer-made events; a validator requires it on execution events), the domain's not.
EVENT_FORM = DomainForm(kind="event", envelope=EVENT_ENVELOPE,
                        fields={"seq": DomainField(type="int")})


def input_form(*, envelope: tuple[str, ...] = ("event_id",), omit: tuple[str, ...] = (),
               order: tuple[str, ...] | None = None, doc: str | None = None,
               **fields: DomainField) -> DomainForm:
    """An orchestrator input's domain form: by default only ``event_id`` of the envelope (the
    state knows the execution), the body as on the wire with the wire's defaults."""
    return DomainForm(kind="input", envelope=envelope, omit=omit, order=order, fields=fields,
                      doc=doc)
