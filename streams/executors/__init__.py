"""Node executors: run one node task (tool, webhook, agent) without Kafka.

`TaskRunner.run(task) -> TaskOutcome` is the interface the streams runtime calls; tools
are plugins (entry point group `flowlog.tools`). See docs/executors.md.
"""

from flowlog.streams.executors.errors import ExecutorError, NonRetryable, Retryable
from flowlog.streams.executors.runner import TaskOutcome, TaskRunner
from flowlog.streams.executors.secrets import SecretResolver
from flowlog.streams.executors.tools import BaseTool, Tool, ToolContext, ToolRegistry

__all__ = [
    "BaseTool", "ExecutorError", "NonRetryable", "Retryable", "SecretResolver",
    "TaskOutcome", "TaskRunner", "Tool", "ToolContext", "ToolRegistry",
]  # fmt: skip
