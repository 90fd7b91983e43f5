"""Model providers the agent loop speaks to (OpenAI- and Anthropic-compatible HTTP APIs)."""

from __future__ import annotations

from flowlog.streams.executors.providers.anthropic import AnthropicProvider
from flowlog.streams.executors.providers.base import Provider
from flowlog.streams.executors.providers.openai import OpenAIProvider

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAIProvider,
    "openai-compatible": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "anthropic-compatible": AnthropicProvider,
}

__all__ = ["PROVIDERS", "AnthropicProvider", "OpenAIProvider", "Provider"]
