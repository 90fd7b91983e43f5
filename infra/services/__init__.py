"""Start, stop and check the real local services without Docker.

`make up` / `make down` / `make status` call :func:`flowlog.infra.services.manager.main`.
"""
