"""The one settings object. Values come from ``SCHEMASAGA_*`` environment variables; CLI flags override."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SCHEMASAGA_", extra="ignore")

    # Core database (metadata, events, jobs). None means: start the embedded PostgreSQL in data_dir.
    database_url: str | None = None
    # Default BYODB, registered as database "default". None on the embedded default: database "byodb"
    # in the embedded cluster.
    # (Kept out of the repr: it may hold a password.)
    byodb_url: str | None = Field(default=None, repr=False)
    data_dir: Path = Path(".schemasaga")
    # Fernet key(s) encrypting BYODB credentials at rest, comma-separated: the first encrypts, all decrypt.
    # Required with database_url; on the embedded default, <data_dir>/secret.key is used (created if absent).
    secret_key: SecretStr | None = None

    # Where databases registered through the API may be (see schemasaga.domain.policy): hosts as a
    # comma-separated allow-list (empty: any host), SQLite files under one directory (default
    # <data_dir>/sqlite). The configured byodb_url is not checked.
    byodb_allowed_hosts: str = ""
    sqlite_dir: Path | None = None
    # Directories whose Unix sockets a registered database may be reached through, comma-separated
    # (empty: no socket). A socket reaches servers that trust local users, the embedded one included.
    byodb_allowed_socket_dirs: str = ""

    # Webhooks (see schemasaga.domain.webhooks): the hosts they may send to, as byodb_allowed_hosts (empty:
    # any public host; a private, loopback or local-network host only when listed). A failed delivery is
    # tried again after base, 2*base... capped at max_delay, until retry_for seconds have passed (then it
    # is failed); each attempt waits at most timeout seconds for an answer.
    webhook_allowed_hosts: str = ""
    webhook_retry_base_delay: float = Field(default=1.0, gt=0)
    webhook_retry_max_delay: float = Field(default=3600.0, gt=0)
    webhook_retry_for: float = Field(default=90000.0, ge=0)
    webhook_timeout: float = Field(default=10.0, gt=0)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Access (see schemasaga.domain.access). auto: tokens are required unless the service listens on a
    # loopback address only; required: always; off: never (every request may do everything).
    auth: Literal["auto", "required", "off"] = "auto"
    # The Host header names answered, comma-separated ("*": any). Unset: localhost, 127.0.0.1 and ::1
    # when listening on loopback (a DNS-rebinding page cannot drive a local service), any otherwise.
    allowed_hosts: str = ""
    # Origins allowed cross-origin (CORS), comma-separated; unset: no CORS headers at all.
    cors_origins: str = ""

    # Worker
    worker_concurrency: int = Field(default=8, ge=1)
    # Seconds between polls for new jobs; bounds the wait when a LISTEN/NOTIFY wake-up is missed.
    job_polling_interval: float = 0.5
    # A worker that sent no heartbeat for this long is considered dead and its jobs are retried.
    stalled_worker_timeout: float = 6.0
    heartbeat_interval: float = 1.0
    # Where `schemasaga worker` serves /metrics, /healthz and /readyz: HOST:PORT (the host an IP address)
    # or a port on 127.0.0.1; empty: nowhere. Tokens as for serve (SCHEMASAGA_AUTH, by this address).
    worker_metrics_listen: str = ""
    # Seconds between checks that the job table's planner statistics still match its size (ANALYZE
    # when not, so a burst of jobs does not slow the job fetch to a crawl); 0 disables.
    queue_analyze_interval: float = Field(default=1.0, ge=0)

    # Saga retries for transient BYODB failures: attempt n waits retry_base_delay * 2**(n-1), capped.
    retry_max_attempts: int = 7
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0

    # DDL guards on the BYODB (milliseconds).
    ddl_lock_timeout_ms: int = 5000
    ddl_statement_timeout_ms: int = 60000
    # PostgreSQL's CONCURRENTLY index builds block no writer: their own limit, 0 for none.
    ddl_online_statement_timeout_ms: int = Field(default=0, ge=0)
    byodb_connect_timeout: int = 5
    # Threads of each registered database's own pool (its operations at once, in each process); as many
    # as a worker's default concurrency, so one busy database is not slower than with a shared pool.
    byodb_threads_per_database: int = Field(default=8, ge=1)
    # Seconds a request waits for a core database connection before answering 503.
    core_pool_timeout: float = 5.0
    # Seconds between reloads of the registered databases from the core database (so a database
    # unregistered or changed by another process is noticed); 0 disables. Unknown names reload at once.
    catalog_refresh_interval: float = 5.0

    snapshot_every: int = Field(default=50, ge=1)
    # Seconds between drift scans; 0 disables the periodic scan.
    drift_scan_interval: float = 0.0

    # How long a deleted table or removed column stays restorable in the trash, in seconds (or with a
    # unit: "7d", "12h", "30m", "45s"); 0 turns the trash off (a deletion drops at once).
    trash_retention: int = Field(default=7 * 86400, ge=0)
    # Seconds between the worker's looks for trash whose retention has ended (each purged by a saga).
    trash_purge_interval: float = Field(default=60.0, gt=0)

    # None: INFO for serve and worker, WARNING for one-shot commands (their output is their answer).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None = None
    # One format for every logger of the process (ours, uvicorn's, procrastinate's). None: json when
    # stderr is not a terminal, text when it is.
    log_format: Literal["json", "text"] | None = None

    @field_validator("trash_retention", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str) and value.strip()[-1:].lower() in _UNITS:
            number = value.strip()[:-1]
            try:
                return round(float(number) * _UNITS[value.strip()[-1].lower()])
            except ValueError:
                raise ValueError(f"{value!r} is not a duration such as 7d, 12h, 30m or 45s") from None
        return value

    @field_validator("log_format", "auth", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def registered_sqlite_dir(self) -> Path:
        """Where SQLite files registered through the API must be."""
        return self.sqlite_dir if self.sqlite_dir is not None else self.data_dir / "sqlite"


class ConfigurationError(Exception):
    """Settings that cannot be used, found at start: the command ends with the message and exit status 2."""
