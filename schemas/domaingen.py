"""The domain's event and input classes, generated from the contract's declarations.

One declaration per event type: the pydantic model (`events.py`, `execution_events.py`)
with its ``domain_forms`` (`domainform.py`). From it come

* the ``.avsc`` files (`avrogen.py`),
* the domain's frozen dataclasses, written as plain source into
  ``aggregates/execution/_generated_events.py`` and ``_generated_inputs.py``
  (`generate_modules`, `write_modules`; the domain imports no pydantic),
* the wire ⇄ domain table (`domain_specs`) that `flowlog.aggregates.records` maps by.

``flowlog schemas generate`` writes the modules, ``flowlog schemas check`` fails while a
committed module differs from what the declarations give (`module_drift`).
"""

from __future__ import annotations

import importlib.util
import json
import textwrap
import types
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from flowlog.schemas.domainform import NO_DEFAULT, DomainForm
from flowlog.schemas.model import AvroJson, Event, Record
from pydantic import AwareDatetime


def aggregates_dir() -> Path:
    """Where the generated modules live: the folder of ``flowlog.aggregates`` (found, not
    imported: the contract does not depend on the domain)."""
    spec = importlib.util.find_spec("flowlog.aggregates")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("flowlog.aggregates is not installed; run from a flowlog checkout")
    return Path(next(iter(spec.submodule_search_locations)))


MODULES = {
    "event": "execution/_generated_events.py",
    "input": "execution/_generated_inputs.py",
}
GENERATE_COMMAND = "flowlog schemas generate"
WireKind = Literal["plain", "json", "error", "enum", "records"]


@dataclass(frozen=True)
class FieldSpec:
    """One domain field and how it crosses the wire.

    ``wire``: ``json`` (canonical JSON text on the wire, a JSON value in the domain),
    ``error`` (the `ErrorInfo` record ⇄ the one error value), ``enum`` (an Avro enum ⇄ its
    text), ``records`` (an array of records ⇄ a tuple of dicts) or ``plain``.
    """

    name: str
    type: str
    wire: WireKind
    wire_nullable: bool
    default: Any = NO_DEFAULT
    factory: str | None = None

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT and self.factory is None


@dataclass(frozen=True)
class TypeSpec:
    """The domain form of one event type: its fields in domain order, and the wire fields
    it leaves out with their wire defaults (`NO_DEFAULT`: the writer must give them)."""

    name: str
    kind: Literal["event", "input"]
    doc: str | None
    fields: tuple[FieldSpec, ...]
    wire_only: tuple[tuple[str, Any], ...]


def _strip(ann: Any) -> tuple[Any, bool]:
    """(the annotation without Annotated, whether it is JSON-valued)."""
    if get_origin(ann) is Annotated:
        base, *meta = get_args(ann)
        if any(isinstance(m, AvroJson) for m in meta):
            return base, True
        return _strip(base)
    return ann, False


def _domain_type(ann: Any) -> tuple[str, WireKind, bool]:
    """(domain annotation text, wire kind, wire nullable) of a model field's annotation."""
    ann, is_json = _strip(ann)
    if is_json:
        return "JSON", "json", False
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only `X | None` unions are supported, got {ann}")
        text, kind, _ = _domain_type(args[0])
        return (text if text == "JSON" else f"{text} | None"), kind, True
    if get_origin(ann) is list:
        item, _ = _strip(get_args(ann)[0])
        if isinstance(item, type) and issubclass(item, Record):
            return "tuple[dict[str, Any], ...]", "records", False
        text, _, _ = _domain_type(item)
        return f"list[{text}]", "plain", False
    if ann is AwareDatetime:
        return "datetime", "plain", False
    if isinstance(ann, type):
        if issubclass(ann, Enum):
            return "str", "enum", False
        if issubclass(ann, Record):  # ErrorInfo: the one error value of the domain
            return "dict[str, Any]", "error", False
        simple = {str: "str", bool: "bool", int: "int", float: "float", bytes: "bytes"}
        if ann in simple:
            return simple[ann], "plain", False
    raise TypeError(f"no domain type for {ann!r}: declare one with DomainField(type=...)")


def _wire_default(model: type[Event], name: str) -> Any:
    info = model.model_fields[name]
    if name == "event_type" or info.is_required():
        return NO_DEFAULT
    if info.default_factory is not None:
        value = info.default_factory()
        return value if value in ([], {}) else NO_DEFAULT  # ids and clocks are no default
    return info.default.value if isinstance(info.default, Enum) else info.default


def _annotation(model: type[Event], name: str) -> Any:
    info = model.model_fields[name]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def type_spec(model: type[Event], form: DomainForm) -> TypeSpec:
    """The domain form of ``model`` under ``form`` (checks the form names real fields)."""
    name = model.__name__
    wire = [f for f in model.model_fields if f != "event_type"]
    envelope = set(Event.model_fields) - {"event_type"}
    unknown = ({*form.envelope, *form.omit, *form.fields, *(form.order or ())}
               - set(wire))
    if unknown:
        raise ValueError(f"{name}: the domain form names fields the model lacks: "
                         f"{sorted(unknown)}")
    body = [f for f in wire if f not in envelope and f not in form.omit]
    names = list(form.order) if form.order is not None else [*form.envelope, *body]
    if form.order is not None and not set(body) <= set(names):
        raise ValueError(f"{name}: `order` leaves out body fields "
                         f"{sorted(set(body) - set(names))} (omit them explicitly)")
    fields = []
    for fname in names:
        text, kind, nullable = _domain_type(_annotation(model, fname))
        default: Any = NO_DEFAULT
        factory = None
        if form.kind == "input":
            default = _wire_default(model, fname)
            if default == [] and kind == "records":
                default = ()
            elif isinstance(default, list | dict):
                factory, default = type(default).__name__, NO_DEFAULT
        override = form.fields.get(fname)
        if override is not None:
            text = override.type or text
            if override.factory is not None:
                factory, default = override.factory, NO_DEFAULT
            elif override.default is not NO_DEFAULT:
                factory, default = None, override.default
        fields.append(FieldSpec(fname, text, kind, nullable, default, factory))
    wire_only = tuple((f, _wire_default(model, f)) for f in wire if f not in names)
    doc = form.doc or model.__dict__.get("__doc__")
    return TypeSpec(name, form.kind, " ".join(doc.split()) if doc else None, tuple(fields),
                    wire_only)


def declared_types() -> tuple[type[Event], ...]:
    """Every event type of the contract, in catalog order."""
    from flowlog.schemas.events import EVENT_TYPES, EXECUTION_TYPES, INPUT_TYPES

    return tuple(dict.fromkeys((*EXECUTION_TYPES, *INPUT_TYPES, *EVENT_TYPES.values())))


def domain_specs(models: tuple[type[Event], ...] | None = None
                 ) -> dict[str, dict[str, TypeSpec]]:
    """``{"event": {name: spec}, "input": {name: spec}}`` from the declarations."""
    out: dict[str, dict[str, TypeSpec]] = {"event": {}, "input": {}}
    for model in models if models is not None else declared_types():
        for form in model.domain_forms:
            if model.__name__ in out[form.kind]:
                raise ValueError(f"{model.__name__}: two {form.kind} forms")
            out[form.kind][model.__name__] = type_spec(model, form)
    return out


# --- source text ------------------------------------------------------------------------------

_HEADER = '''"""{title}

GENERATED by `{command}` from the declarations in schemas/ (the pydantic
models and their ``domain_forms``) — do not edit. Change the declaration, then run
`{command}`; `flowlog schemas check` fails while this file differs.
"""

from __future__ import annotations

'''
_BASES = {
    "event": ("ExecutionEvent", "An event of an execution's history (the envelope)."),
    "input": ("Input", "An input to the orchestrator (its `event_id` is the causation id)."),
}
_TITLES = {
    "event": "The domain's execution events (docs/events.md): one frozen dataclass each.",
    "input": "The orchestrator's inputs as the domain sees them (docs/events.md \"Inputs\").",
}


def _default_src(f: FieldSpec) -> str:
    if f.factory is not None:
        return f" = field(default_factory={f.factory})"
    if f.default is NO_DEFAULT:
        return ""
    return f" = {_literal(f.default)}"


def _literal(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _doc(text: str) -> str:
    lines = textwrap.wrap(text, width=100 - 4 - 3, break_on_hyphens=False)
    if len(lines) == 1 and len(lines[0]) <= 100 - 4 - 6:
        return f'    """{lines[0]}"""\n\n'
    return '    """' + "\n    ".join(lines) + '\n    """\n\n'


def _wrap(prefix: str, names: list[str], indent: str = "    ") -> list[str]:
    lines, line = [prefix], indent
    for n in names:
        piece = f"{n}, "
        if len(line) + len(piece.rstrip()) > 98:
            lines.append(line.rstrip())
            line = indent
        line += piece
    lines.append(line.rstrip())
    return lines


def module_source(kind: Literal["event", "input"], specs: dict[str, TypeSpec]) -> str:
    """The Python source of the generated module of ``kind``."""
    base, base_doc = _BASES[kind]
    shared = _common_prefix([s.fields for s in specs.values()])
    uses_field = any(f.factory for s in specs.values() for f in s.fields)
    out = [_HEADER.format(title=_TITLES[kind], command=GENERATE_COMMAND)]
    out.append(f"from dataclasses import dataclass{', field' if uses_field else ''}\n")
    out.append("from datetime import datetime\n")
    out.append("from typing import Any, ClassVar\n\n")
    out.append("#: A JSON value (JSON-valued fields travel as canonical JSON text on the wire)\n")
    out.append("JSON = Any\n\n\n")
    out.append("@dataclass(frozen=True, slots=True, kw_only=True)\n")
    out.append(f"class {base}:\n    \"\"\"{base_doc}\"\"\"\n\n")
    out.append(f"    event_type: ClassVar[str] = \"{base}\"\n")
    out.extend(f"    {f.name}: {f.type}{_default_src(f)}\n" for f in shared)
    for name, spec in specs.items():
        out.append("\n\n@dataclass(frozen=True, slots=True, kw_only=True)\n")
        out.append(f"class {name}({base}):\n")
        if spec.doc:
            out.append(_doc(spec.doc))
        out.append(f"    event_type: ClassVar[str] = \"{name}\"\n")
        for f in spec.fields[len(shared):]:
            out.append(f"    {f.name}: {f.type}{_default_src(f)}\n")
    table = "EVENT_TYPES" if kind == "event" else "INPUT_TYPES"
    out.append(f"\n\n{table}: dict[str, type[{base}]] = {{\n")
    out.append("    cls.event_type: cls\n")
    out.append("\n".join(_wrap("    for cls in (", list(specs), "        ")) + "\n")
    out.append("    )\n}\n")
    dt = sorted({f.name for s in specs.values() for f in s.fields if "datetime" in f.type})
    out.append("#: the fields holding a datetime (any type)\n")
    names = ", ".join(map(_literal, dt))
    out.append(f"DATETIME_FIELDS: frozenset[str] = frozenset({{{names}}})\n")
    return "".join(out)


def _common_prefix(field_lists: list[tuple[FieldSpec, ...]]) -> tuple[FieldSpec, ...]:
    """The leading fields every type shares (they go to the base class)."""
    if not field_lists:
        return ()
    prefix = field_lists[0]
    for fl in field_lists[1:]:
        n = 0
        while n < min(len(prefix), len(fl)) and prefix[n] == fl[n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def generate_modules(models: tuple[type[Event], ...] | None = None) -> dict[str, str]:
    """``{path under aggregates/: source}`` of every generated module."""
    specs = domain_specs(models)
    return {MODULES[kind]: module_source(kind, specs[kind])
            for kind in ("event", "input")}


def write_modules(root: Path | None = None,
                  models: tuple[type[Event], ...] | None = None) -> list[Path]:
    """Write the generated modules that differ from what is there; the paths written."""
    written = []
    for rel, text in generate_modules(models).items():
        path = (root or aggregates_dir()) / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def module_drift(root: Path | None = None,
                 models: tuple[type[Event], ...] | None = None) -> list[str]:
    """Every generated module that differs from what the declarations give (with the fix)."""
    problems = []
    for rel, text in generate_modules(models).items():
        path = (root or aggregates_dir()) / rel
        if not path.exists():
            problems.append(f"{path}: missing; run `{GENERATE_COMMAND}` to write it")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(
                f"{path}: differs from the declarations in schemas/ (generated code was "
                f"edited, or a declaration changed); run `{GENERATE_COMMAND}` to rewrite it")
    return problems
