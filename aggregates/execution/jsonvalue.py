"""Make CEL results JSON: timestamps → ISO strings, durations → seconds, bytes → text."""

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


def error_dict(type_: str, message: str, retryable: bool) -> dict[str, Any]:
    """The error record of NodeFailed / NodeDeadLettered."""
    return {"type": type_, "message": message, "retryable": retryable}
