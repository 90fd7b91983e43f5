"""One typed settings object for every flowlog process (environment prefix ``FLOWLOG_``).

Every default points at the local services that ``make up`` starts, so nothing needs
configuring on a developer's machine. Each field's environment name is ``FLOWLOG_`` plus
the field name in upper case (``FLOWLOG_KAFKA_PORT``, ``FLOWLOG_PG_DSN`` ...). The README
lists them all; ``flowlog settings`` prints the values in force.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Settings in force; read from the environment (``FLOWLOG_*``) and ``.env``."""

    # populate_by_name: a field read from the environment under alias names (below,
    # `finished_window`) is still set by its own name in code: Settings(finished_window=2)
    model_config = SettingsConfigDict(env_prefix="FLOWLOG_", env_file=".env", extra="ignore",
                                      populate_by_name=True)

    # --- where the local services keep their data and logs (an ignored folder) ---
    state_dir: Path = Field(
        REPO_ROOT / ".state", description="Data, logs and pid files of the local services."
    )

    # --- Kafka ---
    kafka_host: str = Field("127.0.0.1", description="Host the local broker binds to.")
    kafka_port: int = Field(9092, description="Kafka PLAINTEXT listener port.")
    kafka_controller_port: int = Field(9093, description="KRaft controller listener port.")
    kafka_heap: str = Field("1g", description="Broker heap (-Xms = -Xmx, avoids KAFKA-19890).")
    kafka_version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version.")
    kafka_bootstrap: str | None = Field(
        None, description="Bootstrap servers; default is kafka_host:kafka_port."
    )
    topic_prefix: str = Field("flowlog.", description="Prefix of every topic name.")
    default_partitions: int = Field(6, description="Partitions of execution-keyed topics.")
    schema_registry_url: str | None = Field(
        None, description="Confluent schema registry; when set, events use its wire format."
    )

    # --- PostgreSQL ---
    pg_host: str = Field("127.0.0.1", description="PostgreSQL host.")
    pg_port: int = Field(5433, description="PostgreSQL port (5433 avoids a system cluster).")
    pg_user: str = Field("flowlog", description="PostgreSQL user.")
    pg_password: str = Field("flowlog", description="PostgreSQL password.")
    pg_database: str = Field("flowlog", description="PostgreSQL database.")
    pg_superuser: str = Field("postgres", description="Cluster superuser (local cluster).")
    pg_schema: str = Field(
        "flowlog", description="Schema of the read models, analytics and ingress tables "
        "(created by `flowlog db migrate`).")

    # --- Redis ---
    redis_host: str = Field("127.0.0.1", description="Redis host.")
    redis_port: int = Field(6380, description="Redis port (6380 avoids a system Redis).")

    # --- RabbitMQ ---
    rabbitmq_host: str = Field("127.0.0.1", description="RabbitMQ host.")
    rabbitmq_port: int = Field(5673, description="RabbitMQ AMQP port.")
    rabbitmq_dist_port: int = Field(25673, description="RabbitMQ Erlang distribution port.")
    rabbitmq_user: str = Field("flowlog", description="RabbitMQ user.")
    rabbitmq_password: str = Field("flowlog", description="RabbitMQ password.")
    rabbitmq_vhost: str = Field("flowlog", description="RabbitMQ virtual host.")

    # --- dead letters (streams/deadletters, flowlog/cli/dlq.py; docs/deadletters.md) ---
    deadletter_prefix: str | None = Field(
        None, description="Prefix of the dead-letter exchanges and queues on RabbitMQ; "
        "default `<topic_prefix>dl`.")
    deadletter_ladder: list[float] = Field(
        [60.0, 600.0, 3600.0], description="Delays (seconds) of the automatic retry ladder "
        "(JSON list); after the last rung a dead letter is parked for an operator.")
    deadletter_ladders: dict[str, list[float]] = Field(
        {}, description="Ladders per workflow id (JSON object of lists), over "
        "deadletter_ladder; `[]` parks at once.")
    deadletter_batch: int = Field(
        500, description="Dead letters per bridge batch (RabbitMQ prefetch: 3 batches); "
        "the publisher polls up to 4 times this many records per round.")
    deadletter_depth_interval_s: float = Field(
        5.0, description="How often the bridge samples queue depths and the oldest dead "
        "letter's age for /metrics.")
    deadletter_fault_crash_after_send: float = Field(
        0.0, description="Fault tests only: chance that the dead-letter bridge kills itself "
        "(SIGKILL) after sending a batch's retry commands and before acknowledging them.")

    # --- claim check (payloads too large for a Kafka record) ---
    claim_check_threshold_bytes: int = Field(
        512 * 1024, description="Payloads larger than this go to the blob store."
    )
    blob_store_url: str | None = Field(
        None, description="s3://bucket/prefix for S3-compatible stores; default a local folder."
    )

    # --- executors (streams/executors; docs/executors.md) ---
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible API base; agents POST {base}/chat/completions.",
    )
    openai_api_key: str | None = Field(
        None, description="OpenAI-compatible API key, or a ${secret:NAME} reference."
    )
    anthropic_base_url: str = Field(
        "https://api.anthropic.com",
        description="Anthropic-compatible API base; agents POST {base}/v1/messages.",
    )
    anthropic_api_key: str | None = Field(
        None, description="Anthropic API key, or a ${secret:NAME} reference."
    )
    anthropic_version: str = Field(
        "2023-06-01", description="anthropic-version header sent to the Messages API."
    )
    agent_max_steps: int = Field(
        8, description="Model calls per agent task when the node sets no max_steps."
    )
    agent_max_tokens: int = Field(
        1024, description="max_tokens per model call (Anthropic requires one)."
    )
    model_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="USD per million input/output tokens by model prefix (JSON), over the "
        "built-in table.",
    )
    executor_concurrency: dict[str, int] = Field(
        default_factory=lambda: {"agent": 16, "tool": 256, "webhook": 64, "subworkflow": 16},
        description="Tasks running at once per node type in one executor process (JSON).",
    )
    executor_target_concurrency: int = Field(
        32, description="Calls at once per target (HTTP host, provider+model) per process."
    )
    executor_rate_limits: dict[str, float] = Field(
        default_factory=dict,
        description="Tasks started per second per node type (JSON); absent = unlimited.",
    )
    executor_rate_burst: dict[str, float] = Field(
        default_factory=dict,
        description="Token bucket size per node type (JSON); default max(1, rate).",
    )
    executor_rate_limiter: Literal["auto", "redis", "local"] = Field(
        "auto",
        description="Where rate-limit buckets live: redis (shared), local, or auto "
        "(Redis when it answers).",
    )
    executor_default_timeout_ms: int = Field(
        60_000, description="Task timeout when a task carries none."
    )
    breaker_failure_threshold: int = Field(
        5, description="Consecutive failures of a target that open its circuit breaker."
    )
    breaker_cooldown_s: float = Field(
        30.0, description="Seconds an open breaker fails fast before one trial call."
    )
    breaker_store: Literal["auto", "redis", "local"] = Field(
        "auto", description="Where circuit-breaker state lives: redis (shared by every "
        "executor process), local, or auto (Redis when it answers).")
    secrets_dir: Path | None = Field(
        None, description="Folder of secret files, one per name; default <state_dir>/secrets."
    )
    vault_addr: str | None = Field(
        None, description="HashiCorp Vault address; with a token, secrets are read from KV v2."
    )
    vault_token: str | None = Field(None, description="HashiCorp Vault token.")
    vault_mount: str = Field("secret", description="Vault KV v2 mount path.")
    vault_path_prefix: str = Field(
        "flowlog", description="Vault path of secret NAME is <prefix>/NAME (field value)."
    )
    secret_cache_ttl_s: float = Field(
        60.0, description="Seconds a secret read from Vault is kept in memory."
    )

    # --- the engine (streams/runtime) ---
    producer_linger_ms: int = Field(
        0, description="Engine producers wait this long to batch records (latency vs. batching)."
    )
    gc_freeze: bool = Field(
        True, description="Workers move the objects alive after start-up (and after an "
        "orchestrator rebuild) out of the cyclic GC's reach (gc.freeze): full collections "
        "then skip them (40-120 ms pauses per process otherwise).",
    )
    commit_interval_ms: int = Field(
        100, description="The orchestrator and dispatcher commit input offsets at most this often, "
        "off their poll loops (a crash re-reads at most this much; ids make it a no-op).",
    )
    max_poll_records: int = Field(
        500, description="Records per poll of the engine's consumers (one decision batch)."
    )
    # --- streams runtime: fetch batching of the engine roles' consumers (kafka.py) ---
    consumer_fetch_min_bytes: int = Field(
        1, ge=1, description="The engine roles' consumers: the broker answers a fetch once "
        "this many bytes are there, or after FLOWLOG_CONSUMER_FETCH_MAX_WAIT_MS (Kafka's "
        "fetch.min.bytes; 1: at once, the lowest latency, one fetch per record under light load).",
    )
    consumer_fetch_max_wait_ms: int = Field(
        500, ge=0, description="The engine roles' consumers: the longest a fetch waits for "
        "FLOWLOG_CONSUMER_FETCH_MIN_BYTES (Kafka's fetch.max.wait.ms).",
    )
    # --- streams runtime: the finished-executions window (streams/runtime/window.py) ---
    finished_window: int = Field(
        5_000, description="Finished executions the orchestrator, the processor and the "
        "dispatcher keep per partition (their retired states deduplicate late inputs); older "
        "ones leave memory. "
        "FLOWLOG_ORCHESTRATOR_FINISHED_WINDOW and FLOWLOG_PROCESSOR_FINISHED_WINDOW are "
        "accepted as aliases for one release.",
        # an alias replaces the prefixed name, so the new name is listed first (it wins)
        validation_alias=AliasChoices("FLOWLOG_FINISHED_WINDOW",
                                      "FLOWLOG_ORCHESTRATOR_FINISHED_WINDOW",
                                      "FLOWLOG_PROCESSOR_FINISHED_WINDOW"),
    )
    executor_max_inflight: int = Field(
        256, description="Tasks running at once in one executor process (all node types)."
    )
    executor_result_cache: int = Field(
        10_000, description="Finished task keys an executor remembers to re-publish, not re-run."
    )
    consumer_session_timeout_ms: int = Field(
        10_000, description="Consumer-group session timeout: how soon a dead worker's "
        "partitions move to the others.",
    )
    tenant_max_executions: int = Field(
        0, description="Executions of one tenant running at once (0: no limit); more wait "
        "in order (Redis admission).",
    )
    timer_tick_ms: int = Field(
        100, description="How often the dispatcher (and the processor) checks for due timers.")
    # --- the Kafka client of the engine roles (streams/runtime/rdkafka.py; docs/engine.md) ---
    kafka_client: Literal["aiokafka", "confluent"] = Field(
        "aiokafka", description="Kafka client of the orchestrator, dispatcher and "
        "executor roles: aiokafka, or confluent (confluent-kafka/librdkafka behind the same "
        "ports, streams/runtime/rdkafka.py). The processor role stays on aiokafka.",
    )
    # --- the processor role (streams/runtime/processor.py; docs/engine.md) ---
    kafka_isolation_level: Literal["read_committed", "read_uncommitted"] = Field(
        "read_committed", description="What the engine's consumers read: read_committed "
        "never shows a transaction the processor aborted (a fenced owner's writes).",
    )
    processor_transaction_timeout_ms: int = Field(
        60_000, description="The processor's transaction timeout (the broker aborts a "
        "transaction left open longer, e.g. by a paused process).",
    )
    processor_snapshot_interval_s: float = Field(
        30.0, description="How often the processor snapshots a partition's state to "
        "<prefix>processor-snapshots (a restart reads the snapshot plus the tail). 0: never.",
    )
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "at_least_once", description="The processor role's guarantee (as Kafka Streams' "
        "processing.guarantee, whose default it shares): exactly_once, one Kafka "
        "transaction per step and partition, fenced; at_least_once, no transactions: the "
        "process's idempotent producer, writes pipelined, offsets committed after the acks "
        "(not fenced; duplicates dropped by ids).",
    )
    fault_processor_crash_before_tasks: int = Field(
        0, description="Fault tests only: the processor (at_least_once) exits (code 17) at its "
        "N-th step issuing node tasks, its events acknowledged and its tasks never sent "
        "(0: never).",
    )
    fault_processor_pause_before_commit: int = Field(
        0, description="Fault tests only: the processor stops itself (SIGSTOP) before "
        "committing its N-th transaction holding execution events, its writes sent (0: never).",
    )

    # --- audit store and replay tooling (projections/audit; docs/audit.md) ---
    audit_snapshot_every: int = Field(
        100, description="The audit store snapshots an execution every this many events."
    )
    audit_cache_executions: int = Field(
        10_000, description="Executions the audit projector keeps in memory (LRU); a miss "
        "reloads from the store (snapshot + tail).",
    )
    tool_modules: list[str] = Field(
        default_factory=list,
        description="Extra tool modules (JSON list); each exposes TOOLS, a list of tool classes.",
    )
    fault_crash_after_write: int = Field(
        0, description="Fault tests only: the orchestrator (and the processor in "
        "at_least_once) exits (code 17) at its N-th offset commit that follows written "
        "decisions, after the write and before the commit; counted from the process's start "
        "(0: never).",
    )

    # --- ingress (api/auth, api/webhooks, api/gateway, streams/triggers; docs/ingress.md) ---
    auth_jwt_secret: str | None = Field(
        None, description="HS256 key of access tokens; default: a random key kept in "
        "<state_dir>/auth_jwt_secret (set it when several hosts verify tokens).",
    )
    auth_access_ttl_s: int = Field(900, description="Lifetime of an access token (seconds).")
    auth_refresh_ttl_s: int = Field(
        30 * 86400, description="Lifetime of a refresh token (seconds); each use rotates it."
    )
    auth_rate_per_s: float = Field(
        50.0, description="Requests per second one principal (user or API key) may make."
    )
    auth_rate_burst: float = Field(100.0, description="Burst of the per-principal rate limit.")
    auth_cache_ttl_s: float = Field(
        5.0, description="Seconds an API key lookup is cached in a process (a revoked key "
        "is refused within this time).",
    )
    webhook_host: str = Field("127.0.0.1", description="Address the webhook gateway binds to.")
    webhook_port: int = Field(8081, description="Port of the webhook gateway.")
    webhook_max_body_bytes: int = Field(
        1_048_576, description="Largest webhook body accepted (bigger: 413); a trigger's "
        "max_body may lower it."
    )
    webhook_tolerance_s: int = Field(
        300, description="How old a signed webhook's timestamp may be (either way), seconds."
    )
    webhook_rate_per_ip: float = Field(
        200.0, description="Webhook requests per second one client IP may send (429 beyond)."
    )
    webhook_rate_per_key: float = Field(
        2000.0, description="Webhook requests per second one registration (signing key) "
        "accepts (429 beyond)."
    )
    webhook_wait_max_s: float = Field(
        30.0, description="Longest a caller may wait for an execution's result (?wait=)."
    )
    webhook_refresh_s: float = Field(
        1.0, description="How often the webhook gateway re-reads webhook_registrations."
    )
    scheduler_tick_s: float = Field(1.0, description="How often the scheduler looks for due slots.")
    scheduler_lock_ttl_s: float = Field(
        30.0, description="Lifetime of a scheduler's fenced slot lock (renewed while held)."
    )
    scheduler_max_catchup: int = Field(
        100, description="Most missed slots one schedule fires after downtime under "
        "missed: run_all (the rest are recorded as missed).",
    )
    gateway_host: str = Field("127.0.0.1", description="Address the command gateway binds to.")
    gateway_port: int = Field(8082, description="Port of the command gateway.")

    # --- observability (flowlog/observability; README "Observability and operations") ---
    metrics_enabled: bool = Field(
        True, description="Each process serves /metrics, /healthz and /readyz over HTTP.")
    metrics_host: str = Field(
        "127.0.0.1", description="Address the metrics endpoint binds to (0.0.0.0 in "
        "containers).")
    metrics_port: int = Field(
        0, description="Port of the metrics endpoint; 0: a free port chosen by the OS, "
        "written to <state_dir>/run/metrics/<process>-<pid>.json (Prometheus file_sd).")
    metrics_lag_interval_s: float = Field(
        5.0, description="How often consumer lag is sampled into flowlog_consumer_lag.")
    log_json: bool = Field(
        True, description="Worker logs are JSON lines (structlog); false: plain text.")
    trace_enabled: bool = Field(
        True, description="OpenTelemetry trace ids are made and carried in Kafka headers "
        "and logs; false: no tracing at all.")
    trace_sample_ratio: float = Field(
        1.0, description="Share of new traces recorded when an exporter is set (parent-"
        "based: the trigger's decision holds for its execution).")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP traces endpoint (e.g. http://127.0.0.1:4318/v1/traces);"
        " unset: spans are not exported (off by default).")
    prometheus_port: int = Field(
        9090, description="`flowlog run` starts Prometheus here when it is installed "
        "(scraping every process through the run files); 0: do not start it.")
    demo_port: int = Field(
        8790, description="`flowlog run`'s local demo server of examples/ (stand-in model, "
        "helpdesk, partner); the examples' URL inputs default to this port.")

    # --- query API (api/query, api/dashboard; docs/api.md) ---
    api_host: str = Field("127.0.0.1", description="Address the query API binds to.")
    api_port: int = Field(8083, description="Port of the query API and its dashboard.")
    api_pg_pool: int = Field(10, description="PostgreSQL connections of the query API.")
    api_workers: int = Field(
        1, description="Processes serving the query API on one port (SO_REUSEPORT); each has "
        "its own PostgreSQL pool of api_pg_pool connections.")
    api_live_poll_s: float = Field(
        5.0, description="A live (SSE) stream re-reads the read model after this many quiet "
        "seconds (pub/sub is at-most-once).")
    api_live_resume_skew_s: float = Field(
        30.0, description="A workflow's live stream, resumed with Last-Event-ID, re-sends "
        "executions whose last event is up to this much older than the id (events reach the "
        "read model out of order across executions).")

    # --- projections (projections/; docs/projections.md) ---
    projectors: list[str] = Field(
        ["readmodel", "analytics"], description="Projectors `flowlog worker projector` runs "
        "(JSON list): readmodel, analytics.")
    projector_batch_records: int = Field(
        2000, description="Kafka records per projector transaction (at most).")
    projector_live_status: bool = Field(
        True, description="Publish changed executions' status on Redis pub/sub after each "
        "committed batch (channels <topic prefix>status and <topic prefix>status.<id>).")
    rollup_interval_s: float = Field(
        5.0, description="How often the analytics projector recomputes the per-minute "
        "rollups of the minutes it changed (plain PostgreSQL form).")

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    @property
    def pg_dsn(self) -> str:
        return (
            f"postgresql://{self.pg_user}:{self.pg_password}"
            f"@{self.pg_host}:{self.pg_port}/{self.pg_database}"
        )

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/0"

    @property
    def amqp_url(self) -> str:
        return (
            f"amqp://{self.rabbitmq_user}:{self.rabbitmq_password}"
            f"@{self.rabbitmq_host}:{self.rabbitmq_port}/{self.rabbitmq_vhost}"
        )

    @property
    def blob_dir(self) -> Path:
        return self.state_dir / "blobs"

    @property
    def secrets_folder(self) -> Path:
        return self.secrets_dir or self.state_dir / "secrets"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
