"""The pure domain: workflow definitions, the execution aggregate and its decisions."""
