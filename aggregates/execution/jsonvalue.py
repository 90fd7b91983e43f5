"""JSON values of the domain: CEL results made JSON (timestamps → ISO strings, durations →
seconds, bytes → text), and the one error value every failure record carries."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Any

_PLAIN = (str, int, float, bool, type(None))


def to_json(value: Any) -> Any:
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return str(value)


#: Whether an error that does not say is worth another attempt. Like Temporal's
#: ApplicationError: retryable unless marked otherwise (attempts stay bounded by the policy).
DEFAULT_RETRYABLE = True


def error_dict(type_: str, message: str, retryable: bool) -> dict[str, Any]:
    """The error record of NodeFailed / NodeDeadLettered / NodeResultReported."""
    return {"type": type_, "message": message, "retryable": retryable}


def error_from(err: Any) -> dict[str, Any]:
    """Any error mapping (a decoded record, a runner's outcome, a user's JSON) as the one
    error value: ``type`` (default ``Error``), ``message``, ``retryable``
    (default `DEFAULT_RETRYABLE`) and, only when set, ``retry_at`` (ISO text: a failure that
    never reached its target, e.g. an open circuit breaker, to retry not before then).
    The single converter every reader and writer uses."""
    if not isinstance(err, dict):
        return error_dict("Error", "" if err is None else str(err), DEFAULT_RETRYABLE)
    retryable = err.get("retryable")
    out = error_dict(str(err.get("type") or "Error"), str(err.get("message") or ""),
                     DEFAULT_RETRYABLE if retryable is None else bool(retryable))
    retry_at = err.get("retry_at")
    if retry_at is not None:  # not before then (ISO text in the domain: errors stay JSON)
        out["retry_at"] = retry_at.isoformat() if isinstance(retry_at, datetime) else str(
            retry_at)
    return out


def is_retryable(err: dict[str, Any] | None) -> bool:
    """Whether ``err`` is worth another attempt (`DEFAULT_RETRYABLE` when it does not say)."""
    if not err:
        return DEFAULT_RETRYABLE
    retryable = err.get("retryable")
    return DEFAULT_RETRYABLE if retryable is None else bool(retryable)
