"""Errors of the audit tooling: bad input names what was given and what exists."""

from __future__ import annotations


class AuditError(Exception):
    """Base of the audit package's errors."""


class AuditInputError(AuditError, ValueError):
    """The caller asked for something that does not exist or does not validate (unknown
    execution id, a seq past the end, a definition that does not validate). The CLI exits 2
    on it and writes nothing."""
