"""One typed settings object, read from the environment once.

Every variable is documented in the README with its default. Defaults make a laptop run work:
with no DATABASE_URL and no broker URL the embedded default is used (SQLite and a file-backed
Celery transport in one data directory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping

from beacon import __version__


class SettingsError(ValueError):
    """A configuration variable has a value that cannot be used."""


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value if value else default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _str(env, name)
    if raw is None:
        return default
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _str(env, name, "") or ""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _pairs(env: Mapping[str, str], name: str) -> tuple[tuple[str, str], ...]:
    """``a=X,b=Y`` as ((a, X), (b, Y)); a key may repeat."""
    pairs = []
    for item in _list(env, name):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not (sep and key and value):
            raise SettingsError(f"{name} must be a comma list of name=value pairs, got {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


def _basic_auth(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """``user:pass[,user:pass]`` as ("user:pass", ...); both parts required."""
    for item in _list(env, name):
        user, sep, password = item.partition(":")
        if not (sep and user and password):
            raise SettingsError(f"{name} must be a comma list of user:password pairs")
    return _list(env, name)


def _thresholds(env: Mapping[str, str]) -> tuple[float, float, float]:
    """(high divergence, medium divergence, similarity) for ``beacon.execution.analysis.Thresholds``."""
    values = []
    for name, default in (("ANALYSIS_HIGH_DIVERGENCE", 0.6), ("ANALYSIS_MEDIUM_DIVERGENCE", 0.3),
                          ("ANALYSIS_SIMILARITY", 0.5)):
        raw = _str(env, name)
        try:
            value = default if raw is None else float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
        if not 0.0 <= value <= 1.0:  # NaN fails this too
            raise SettingsError(f"{name} must be between 0 and 1, got {raw!r}")
        values.append(value)
    high, medium, similar = values
    if medium > high:
        raise SettingsError(f"ANALYSIS_MEDIUM_DIVERGENCE ({medium}) must not exceed ANALYSIS_HIGH_DIVERGENCE ({high})")
    return high, medium, similar


def _environment(env: Mapping[str, str]) -> str:
    """``production`` when BEACON_ENV says so, or by default on Fly (FLY_APP_NAME is set there)."""
    default = "production" if _str(env, "FLY_APP_NAME") else "development"
    value = (_str(env, "BEACON_ENV", default) or default).lower()
    if value not in ("development", "production"):
        raise SettingsError(f"BEACON_ENV must be development or production, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    broker_url: str
    rate_limit_redis_url: str | None
    port: int
    trusted_keys_file: str | None
    trust_enforce: bool
    timestamp_max_skew_minutes: int
    timestamp_max_age_minutes: int
    max_body_bytes: int
    rate_limit_ip_per_minute: int
    rate_limit_key_per_minute: int
    nonce_ttl_minutes: int
    idempotency_ttl_hours: int
    outbox_retention_days: int
    outbox_relay_interval_seconds: int
    default_model: str
    max_units_per_job: int
    providers_file: str | None
    questions_file: str | None
    log_level: str
    web_concurrency: int
    max_unit_attempts: int
    unit_retry_base_seconds: float
    unit_retry_max_seconds: float
    unit_lease_margin_seconds: int
    pending_redispatch_seconds: int
    job_queued_grace_seconds: int
    sweep_interval_seconds: int
    simulator_latency_ms: float
    simulator_error_rate: float
    simulator_hang_rate: float
    analysis_thresholds: tuple[float, float, float]  # high divergence, medium divergence, similarity
    admin_tokens: tuple[str, ...] = field(repr=False, default=())
    operator_tokens: tuple[str, ...] = field(repr=False, default=())
    viewer_tokens: tuple[str, ...] = field(repr=False, default=())
    # Evidence: receipts, bundles, IPFS pinning, transparency log.
    production: bool = False
    runner_signing_key: str | None = None
    ipfs_api_url: str | None = None
    ipfs_timeout_seconds: float = 30.0
    pin_retry_base_seconds: float = 30.0
    pin_retry_max_seconds: float = 3600.0
    pin_retry_interval_seconds: int = 30
    fly_region: str | None = None
    worker_regions_by_fly_region: tuple[tuple[str, str], ...] = ()
    # Observability: Sentry, Prometheus metrics, Flower.
    sentry_dsn: str | None = field(repr=False, default=None)
    sentry_environment: str = "production"
    sentry_traces_sample_rate: float = 0.2
    sentry_send_pii: bool = False
    sentry_release: str = __version__
    metrics_port: int = 9091
    flower_port: int = 5555
    flower_basic_auth: tuple[str, ...] = field(repr=False, default=())
    # Resilience: bounded provider calls, retries sized to the job, database outages, shutdown.
    max_answer_bytes: int = 262144
    max_provider_calls: int = 50
    worker_shutdown_grace_seconds: float = 30.0
    job_end_poll_seconds: float = 2.0
    db_retry_base_seconds: float = 0.5
    db_retry_max_seconds: float = 10.0
    worker_heartbeat_seconds: float = 5.0

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (SQLite), not Postgres."""
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        data_dir = Path(_str(env, "BEACON_DATA_DIR", "beacon-data")).resolve()
        redis_url = _str(env, "REDIS_URL")
        database_url = _str(env, "DATABASE_URL") or f"sqlite:///{data_dir / 'beacon.db'}"
        if database_url.startswith("postgres://"):  # Fly and Heroku hand out this spelling
            database_url = "postgresql://" + database_url[len("postgres://"):]
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
        broker_url = _str(env, "CELERY_BROKER_URL") or redis_url or "filesystem://"
        admin_tokens = _list(env, "ADMIN_TOKENS") + _list(env, "ADMIN_TOKEN")
        settings = cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            broker_url=broker_url,
            rate_limit_redis_url=_str(env, "RATE_LIMIT_REDIS_URL", redis_url),
            port=_int(env, "PORT", 8090, minimum=1),
            trusted_keys_file=_str(env, "TRUSTED_KEYS_FILE"),
            trust_enforce=_bool(env, "TRUST_ENFORCE", True),
            timestamp_max_skew_minutes=_int(env, "TIMESTAMP_MAX_SKEW_MINUTES", 5),
            timestamp_max_age_minutes=_int(env, "TIMESTAMP_MAX_AGE_MINUTES", 10),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            rate_limit_ip_per_minute=_int(env, "RATE_LIMIT_IP_PER_MINUTE", 10, minimum=1),
            rate_limit_key_per_minute=_int(env, "RATE_LIMIT_KEY_PER_MINUTE", 5, minimum=1),
            nonce_ttl_minutes=_int(env, "NONCE_TTL_MINUTES", 60, minimum=1),
            idempotency_ttl_hours=_int(env, "IDEMPOTENCY_TTL_HOURS", 24, minimum=1),
            outbox_retention_days=_int(env, "OUTBOX_RETENTION_DAYS", 7, minimum=1),
            outbox_relay_interval_seconds=_int(env, "OUTBOX_RELAY_INTERVAL_SECONDS", 5, minimum=1),
            default_model=_str(env, "DEFAULT_MODEL", "llama3.2-1b"),
            max_units_per_job=_int(env, "MAX_UNITS_PER_JOB", 500, minimum=1),
            providers_file=_str(env, "PROVIDERS_FILE"),
            questions_file=_str(env, "QUESTIONS_FILE"),
            log_level=(_str(env, "LOG_LEVEL", "INFO") or "INFO").upper(),
            web_concurrency=_int(env, "WEB_CONCURRENCY", 2, minimum=1),
            max_unit_attempts=_int(env, "MAX_UNIT_ATTEMPTS", 5, minimum=1),
            unit_retry_base_seconds=_float(env, "UNIT_RETRY_BASE_SECONDS", 1.0, 0.0, 600.0),
            unit_retry_max_seconds=_float(env, "UNIT_RETRY_MAX_SECONDS", 30.0, 0.0, 3600.0),
            unit_lease_margin_seconds=_int(env, "UNIT_LEASE_MARGIN_SECONDS", 30, minimum=1),
            pending_redispatch_seconds=_int(env, "PENDING_REDISPATCH_SECONDS", 60, minimum=1),
            job_queued_grace_seconds=_int(env, "JOB_QUEUED_GRACE_SECONDS", 60, minimum=1),
            sweep_interval_seconds=_int(env, "SWEEP_INTERVAL_SECONDS", 10, minimum=1),
            simulator_latency_ms=_float(env, "SIMULATOR_LATENCY_MS", 20.0, 0.0, 600_000.0),
            simulator_error_rate=_float(env, "SIMULATOR_ERROR_RATE", 0.0, 0.0, 1.0),
            simulator_hang_rate=_float(env, "SIMULATOR_HANG_RATE", 0.0, 0.0, 1.0),
            analysis_thresholds=_thresholds(env),
            admin_tokens=admin_tokens,
            operator_tokens=_list(env, "OPERATOR_TOKENS"),
            viewer_tokens=_list(env, "VIEWER_TOKENS"),
            production=_environment(env) == "production",
            runner_signing_key=_str(env, "RUNNER_SIGNING_KEY"),
            ipfs_api_url=(_str(env, "IPFS_API_URL") or "").rstrip("/") or None,
            ipfs_timeout_seconds=_float(env, "IPFS_TIMEOUT_SECONDS", 30.0, 0.1, 3600.0),
            pin_retry_base_seconds=_float(env, "PIN_RETRY_BASE_SECONDS", 30.0, 0.0, 86400.0),
            pin_retry_max_seconds=_float(env, "PIN_RETRY_MAX_SECONDS", 3600.0, 0.0, 7 * 86400.0),
            pin_retry_interval_seconds=_int(env, "PIN_RETRY_INTERVAL_SECONDS", 30, minimum=1),
            fly_region=_str(env, "FLY_REGION"),
            worker_regions_by_fly_region=_pairs(env, "WORKER_REGIONS_BY_FLY_REGION"),
            sentry_dsn=_str(env, "SENTRY_DSN"),
            sentry_environment=_str(env, "SENTRY_ENVIRONMENT", "production"),
            sentry_traces_sample_rate=_float(env, "SENTRY_TRACES_SAMPLE_RATE", 0.2, 0.0, 1.0),
            sentry_send_pii=_bool(env, "SENTRY_SEND_PII", False),
            sentry_release=_str(env, "SENTRY_RELEASE") or _str(env, "FLY_IMAGE_REF") or __version__,
            metrics_port=_int(env, "METRICS_PORT", 9091),
            flower_port=_int(env, "FLOWER_PORT", 5555, minimum=1),
            flower_basic_auth=_basic_auth(env, "FLOWER_BASIC_AUTH"),
            max_answer_bytes=_int(env, "MAX_ANSWER_BYTES", 262144, minimum=1024),
            max_provider_calls=_int(env, "MAX_PROVIDER_CALLS", 50, minimum=1),
            worker_shutdown_grace_seconds=_float(env, "WORKER_SHUTDOWN_GRACE_SECONDS", 30.0, 0.0, 3600.0),
            job_end_poll_seconds=_float(env, "JOB_END_POLL_SECONDS", 2.0, 0.1, 600.0),
            db_retry_base_seconds=_float(env, "DB_RETRY_BASE_SECONDS", 0.5, 0.0, 600.0),
            db_retry_max_seconds=_float(env, "DB_RETRY_MAX_SECONDS", 10.0, 0.0, 3600.0),
            worker_heartbeat_seconds=_float(env, "WORKER_HEARTBEAT_SECONDS", 5.0, 0.2, 600.0),
        )
        if settings.production and not settings.runner_signing_key:
            raise SettingsError(
                "RUNNER_SIGNING_KEY is required in production (BEACON_ENV=production, or on Fly): the path of "
                "the runner's Ed25519 key file (`beacon keygen`), the same file in every process"
            )
        window = settings.timestamp_max_age_minutes + settings.timestamp_max_skew_minutes
        if settings.nonce_ttl_minutes < window:
            raise SettingsError(
                f"NONCE_TTL_MINUTES ({settings.nonce_ttl_minutes}) must cover the timestamp window "
                f"(TIMESTAMP_MAX_AGE_MINUTES + TIMESTAMP_MAX_SKEW_MINUTES = {window}), or replays "
                "could pass once their nonce is purged"
            )
        return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from os.environ on first use."""
    return Settings.from_env()
