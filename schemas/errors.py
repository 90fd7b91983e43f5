"""The contract's error tree.

``ContractError``
  ├── ``DecodeError``: bytes that are not a readable event (goes to quarantine)
  │     ``BadMagicError``, ``TruncatedError``, ``UnknownSchemaError``, ``OversizedError``,
  │     ``ClaimCheckError``
  ├── ``EventValidationError``: a well-formed value that breaks the contract
  │     (names the field, the value and the fix)
  ├── ``EncodeError``: a record that does not fit its Avro schema
  ├── ``SchemaCompatibilityError``: a schema change that breaks Avro resolution
  └── ``BlobStoreError``: the claim-check store failed (retryable)

Whether an error is worth retrying is part of its type (``retryable``).
"""

from __future__ import annotations

from typing import Any, ClassVar


class ContractError(Exception):
    """Base of every error raised by ``flowlog.schemas``."""

    retryable: ClassVar[bool] = False
    #: Short machine-readable reason (the quarantine record's ``error_type`` is the class name).
    code: ClassVar[str] = "contract_error"


class DecodeError(ContractError):
    """The bytes cannot be read as an event of the contract."""

    code = "undecodable"


class BadMagicError(DecodeError):
    """The first bytes are neither Avro single-object (C3 01) nor Confluent (00) framing."""

    code = "bad_magic"


class TruncatedError(DecodeError):
    """The record ends before its header or body does."""

    code = "truncated"


class UnknownSchemaError(DecodeError):
    """The fingerprint or registry id names no schema we know."""

    code = "unknown_schema"


class OversizedError(DecodeError):
    """The record is larger than the consumer accepts."""

    code = "oversized"


class ClaimCheckError(DecodeError):
    """A claim check points to a blob that is missing or does not match its hash."""

    code = "claim_check"


class EventValidationError(ContractError):
    """A value breaks the contract; says which field, what value and how to fix it."""

    code = "invalid"

    def __init__(
        self, event_type: str, field: str, value: Any, problem: str, fix: str
    ) -> None:
        self.event_type = event_type
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        shown = "<missing>" if value is _MISSING else repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(
            f"{event_type}: field '{field}' {problem} (value: {shown}). Fix: {fix}"
        )


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


#: Stands for the value of a field that was not given at all.
_MISSING: Any = _Missing()
MISSING: Any = _MISSING


class EncodeError(ContractError):
    """A record does not fit its Avro schema (a bug in the caller, not bad input)."""

    code = "unencodable"


class SchemaCompatibilityError(ContractError):
    """A schema change breaks Avro resolution; ``problems`` lists each break with its path."""

    code = "incompatible"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class BlobStoreError(ContractError):
    """The claim-check store could not be written or read; worth retrying."""

    retryable = True
    code = "blob_store"


class PublishError(ContractError):
    """The broker did not accept an event (after the producer's own retries)."""

    code = "publish_failed"

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable_now = retryable
