"""The example workflows' tools (``tools``) and a local demo server (``demo_server``).

Demo stand-ins, not integrations: the quote providers make prices up from the symbol,
the CRM and ticket tools answer canned records, and the demo server's "model" follows
rules (it is not a language model). They exist so every workflow in ``examples/`` runs
on a fresh machine with no keys.
"""
