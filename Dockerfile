# flowlog: one image for every role and process (`flowlog worker ROLE`), the CLI and the
# examples plugin. Build: docker build -t flowlog .   Used by infra/compose and infra/k8s.
FROM python:3.11-slim AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY flowlog flowlog
COPY schemas schemas
COPY aggregates aggregates
COPY streams streams
COPY projections projections
COPY api api
COPY infra infra
COPY examples examples
RUN pip wheel --no-cache-dir --wheel-dir /wheels . ./examples

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 flowlog && mkdir -p /var/lib/flowlog \
    && chown flowlog /var/lib/flowlog
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY examples/*.yaml examples/
COPY infra/prometheus infra/prometheus
USER flowlog
# Containers: metrics on all interfaces at a fixed port (probes and scrapes know it),
# state (blobs, secrets folder) in a volume, JSON logs to stdout.
ENV FLOWLOG_METRICS_HOST=0.0.0.0 \
    FLOWLOG_METRICS_PORT=9464 \
    FLOWLOG_STATE_DIR=/var/lib/flowlog \
    PYTHONUNBUFFERED=1
VOLUME /var/lib/flowlog
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:9464/healthz', timeout=2)" || exit 1
ENTRYPOINT ["flowlog"]
CMD ["worker", "all"]
