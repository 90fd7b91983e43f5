"""The webhook gateway: validates signed HTTP requests and publishes triggers (only that).

Read in this order: ``signing.py`` (the signature scheme), ``registrations.py`` (what a
path accepts), ``app.py`` (the request path), ``service.py`` (the process).
"""
