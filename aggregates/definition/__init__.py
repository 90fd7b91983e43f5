"""Workflow definitions: the format, parsing, validation, the compiled form and the aggregate."""

from flowlog.aggregates.definition.compiled import CompiledDefinition, compile_definition
from flowlog.aggregates.definition.model import NodeSpec, WorkflowSpec
from flowlog.aggregates.definition.parse import load_definition, parse_definition
from flowlog.aggregates.definition.validate import validate_definition

__all__ = [
    "CompiledDefinition",
    "NodeSpec",
    "WorkflowSpec",
    "compile_definition",
    "load_definition",
    "parse_definition",
    "validate_definition",
]
