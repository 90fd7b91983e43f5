"""Model prices (USD per million input and output tokens), matched by longest model prefix.

Figures are list prices at the time of writing; `FLOWLOG_MODEL_PRICES` overrides or adds
entries (e.g. `{"my-local-model": [0, 0]}`). An unknown model costs 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}


def price_of(
    model: str, overrides: Mapping[str, Sequence[float]] | None = None
) -> tuple[float, float]:
    table: dict[str, tuple[float, float]] = dict(PRICES)
    for name, pair in (overrides or {}).items():
        table[name] = (float(pair[0]), float(pair[1]))
    best = max((p for p in table if model.startswith(p)), key=len, default=None)
    return table[best] if best is not None else (0.0, 0.0)


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    overrides: Mapping[str, Sequence[float]] | None = None,
) -> float:
    inp, out = price_of(model, overrides)
    return round((input_tokens * inp + output_tokens * out) / 1_000_000, 8)
