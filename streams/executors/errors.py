"""The executors' error tree: whether an error is retryable is part of its type.

Node runners raise these; `TaskRunner` turns any of them into a failed `TaskOutcome`
with `error = {"type", "message", "retryable"}`. An unexpected exception from a tool is
reported as `tool_error`, retryable (a tool that wants no retry raises `NonRetryable`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar


class ExecutorError(Exception):
    """Base of every error a node task reports; `type` and `retryable` go into the event."""

    type: ClassVar[str] = "executor_error"
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self._retryable = retryable

    @property
    def is_retryable(self) -> bool:
        return self.retryable if self._retryable is None else self._retryable

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "retryable": self.is_retryable}


class Retryable(ExecutorError):
    """A failure worth trying again (the target may recover)."""

    type = "retryable_error"
    retryable = True


class NonRetryable(ExecutorError):
    """A failure that will happen again on every attempt (fix the definition or input)."""

    type = "non_retryable_error"
    retryable = False


class TaskTimeout(Retryable):
    type = "timeout"


class ConnectionFailed(Retryable):
    type = "connection_error"


class HttpStatusError(ExecutorError):
    """A non-2xx answer: 5xx, 408 and 429 are retryable, other 4xx are not."""

    type = "http_error"

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, retryable=is_retryable_status(status))
        self.status = status


class CircuitOpen(Retryable):
    """The target's breaker is open: the call was not made. ``retry_at`` (wall clock) is
    when a retry may get through; the orchestrator retries then without using an attempt."""

    type = "circuit_open"

    def __init__(self, message: str, *, retry_at: datetime | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.retry_at is not None:
            out["retry_at"] = self.retry_at.isoformat()
        return out


class RateLimited(Retryable):
    type = "rate_limited"


class InvalidInput(NonRetryable):
    type = "invalid_input"


class InvalidConfig(NonRetryable):
    type = "invalid_config"


class ToolNotFound(NonRetryable):
    type = "tool_not_found"


class ToolFailed(Retryable):
    type = "tool_error"


class SecretMissing(NonRetryable):
    type = "secret_missing"


class SecretBackendFailed(Retryable):
    type = "secret_backend_error"


class ProviderResponseError(Retryable):
    """A model provider answered 2xx with a body we cannot read."""

    type = "provider_error"


class MaxStepsExceeded(NonRetryable):
    type = "max_steps_exceeded"


class Unsupported(NonRetryable):
    type = "unsupported"


def is_retryable_status(status: int) -> bool:
    """HTTP statuses worth retrying: 5xx, 408 Request Timeout, 429 Too Many Requests."""
    return status >= 500 or status in (408, 429)
