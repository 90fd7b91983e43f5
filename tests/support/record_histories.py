"""Record the scripted example runs as fixtures: `python -m tests.support.record_histories`.

Re-record only when a change of behaviour is intended, and say so in the commit: the
fixtures are how later changes are checked against recorded executions.
"""

from __future__ import annotations

import json

from flowlog.aggregates.execution.events import event_to_dict

from tests.support.runs import HISTORIES, input_to_dict
from tests.support.scenarios import SCENARIOS

RECORDED = ("support_triage_billing", "batch_loop", "webhook_dead_letter_then_retry",
            "delay_and_wait_approved")  # fmt: skip


def _pin(workflow_id: str) -> str:
    """Copy examples/<id>.yaml next to the histories; return its repo-relative path."""
    source = HISTORIES.parents[2] / "examples" / f"{workflow_id}.yaml"
    pinned = HISTORIES / "definitions" / source.name
    pinned.parent.mkdir(parents=True, exist_ok=True)
    pinned.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    return str(pinned.relative_to(HISTORIES.parents[2]))


def main() -> None:
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for name in RECORDED:
        run = SCENARIOS[name]()
        doc = {
            # the definition it was recorded with, kept beside it: an example may change
            "definition": _pin(run.d.workflow_id),
            "inputs": [input_to_dict(at, inp) for at, inp in run.inputs],
            "events": [event_to_dict(e) for e in run.events],
            "final_state": run.state.to_dict(),
        }
        path = HISTORIES / f"{name}.json"
        path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {path} ({len(run.events)} events)")


if __name__ == "__main__":
    main()
