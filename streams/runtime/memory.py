"""The cyclic garbage collector and the engine's latency.

A full (generation 2) collection scans every tracked object; a worker's heap is mostly
lasting objects (modules, compiled schemas, clients, definitions, execution states), so
each full pass stalls the role for 40-120 ms on this machine class (measured with
gc.callbacks during the engine benchmark at 300/s), and every execution in flight waits.
`gc.freeze()` moves what is alive into a permanent generation that collections skip.
Reference counting still frees those objects; only reference cycles formed before the
freeze are never collected, so it is called where the heap is mostly lasting objects:
after a worker starts and after the orchestrator rebuilds a partition.
"""

from __future__ import annotations

import gc

from flowlog.settings import Settings


def freeze_gc(settings: Settings) -> None:
    if settings.gc_freeze:
        gc.freeze()
