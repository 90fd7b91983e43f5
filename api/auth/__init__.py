"""Authentication and authorisation shared by the ingress apps and the query API.

JWT access tokens with rotating refresh tokens, hashed API keys, roles per tenant and
per-principal rate limits. Start with ``deps.Authenticator`` (the FastAPI dependency).
"""
