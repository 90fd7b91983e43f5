"""Trigger sources: webhook registrations (followed from definitions) and the scheduler.

Start with ``webhook_registrar.py`` (definitions → the ``webhook_registrations`` table the
webhook gateway serves) and ``scheduler.py`` (cron slots → triggers, with a ledger).
"""
