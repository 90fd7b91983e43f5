"""Node runners, one module per node type (tool, webhook, agent, subworkflow)."""
