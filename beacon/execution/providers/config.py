"""Per-region provider selection, from a providers file or the built-in simulator.

``PROVIDERS_FILE`` is TOML (``.toml``) or YAML (``.yaml``/``.yml``) with one table per region::

    [regions.US]
    provider = "openai"             # hybrid_router | openai | simulator
    base_url = "http://127.0.0.1:8000"
    api_key_env = "US_OPENAI_KEY"   # the NAME of an env variable holding the key, never the key
    timeout_s = 60                  # caps every call's timeout (default 120)
    max_in_flight = 8               # calls in flight at once for this region, per worker process
                                    # (default: a fair share of the worker's threads, ceil(threads /
                                    # regions served)); a unit over it waits in its queue, not a thread
    temperature = 0.1               # HTTP kinds: sent with every call (default 0.1, as Go)
    max_tokens = 500                # HTTP kinds: sent with every call (default 500, as Go)
    router_region = "us-east"       # HTTP kinds: the router's region_preference (default: Go's
                                    # mapping, US us-east, EU eu-west, APAC/ASIA asia-pacific,
                                    # anything else eu-west); also picks the default prompt's place
    system_prompt = "..."           # HTTP kinds: default Go's regional prompt; "" for none

    [regions.APAC]
    provider = "simulator"
    latency_ms = 20                 # simulator only, default 20
    error_rate = 0.0                # simulator only: share of calls failing with http_503
    hang_rate = 0.0                 # simulator only: share of calls hanging until their timeout
    behaviour = "refuses_sensitive" # simulator only: plain | divergent | refuses_sensitive
                                    # (default: US plain, EU divergent, APAC refuses_sensitive)

The YAML form is the same mapping: ``regions: {US: {provider: openai, base_url: ...}}``.
``base_url`` is required for the HTTP kinds; ``api_key_env``, when given, must name a set
variable. Anything else (unknown keys, keys of another kind, negative numbers, a temperature
outside 0..2) is a ``ValueError`` naming the file, the region and the field. ``docs/providers.md``
describes every setting and the router protocol.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .base import Provider, ProviderAnswer, ProviderError, ProviderRequest
from .http_clients import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_TEMPERATURE,
    GO_ROUTER_REGIONS,
    ROUTER_REGION_NAMES,
    HybridRouterProvider,
    OpenAICompatProvider,
    RegionSettings,
)
from .simulator import BEHAVIOURS, DEFAULT_REGION_BEHAVIOUR, SimulatorProvider

KINDS = ("hybrid_router", "openai", "simulator")
HTTP_KINDS = ("hybrid_router", "openai")
DEFAULT_REGIONS = ("US", "EU", "APAC")

log = logging.getLogger(__name__)

_COMMON_KEYS = ("provider", "timeout_s", "max_in_flight")
_HTTP_KEYS = ("base_url", "api_key_env", "temperature", "max_tokens", "router_region", "system_prompt")
_KEYS = {
    "hybrid_router": _COMMON_KEYS + _HTTP_KEYS,
    "openai": _COMMON_KEYS + _HTTP_KEYS,
    "simulator": _COMMON_KEYS + ("latency_ms", "error_rate", "hang_rate", "behaviour"),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ProviderConfig:
    """One region's provider. ``api_key`` is the resolved secret (never shown in repr).

    ``temperature``, ``max_tokens``, ``router_region`` and ``system_prompt`` are the HTTP kinds'
    :class:`RegionSettings` (see :attr:`settings`); the simulator ignores them.
    """

    region: str
    provider: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_in_flight: int | None = None  # None: a fair share of the worker's concurrency (RegionSlots)
    latency_ms: float = 20
    error_rate: float = 0.0
    hang_rate: float = 0.0
    behaviour: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    router_region: str | None = None
    system_prompt: str | None = None

    @property
    def settings(self) -> RegionSettings:
        """What the HTTP providers send for this region."""
        return RegionSettings(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            router_region=self.router_region,
            system_prompt=self.system_prompt,
        )

    def __post_init__(self) -> None:
        def fail(what: str) -> ValueError:
            return ValueError(f"region {self.region!r}: {what}")

        if self.provider not in KINDS:
            raise fail(f"provider must be one of {', '.join(KINDS)}, got {self.provider!r}")
        if self.provider in HTTP_KINDS:
            if not isinstance(self.base_url, str) or not self.base_url.startswith(("http://", "https://")):
                raise fail(f"base_url must be an http(s) URL for provider {self.provider!r}, got {self.base_url!r}")
        elif self.base_url is not None or self.api_key is not None:
            raise fail("base_url and api_key_env are not used by provider 'simulator'")
        if not _is_number(self.timeout_s) or self.timeout_s <= 0:
            raise fail(f"timeout_s must be a positive number, got {self.timeout_s!r}")
        if self.max_in_flight is not None and (not isinstance(self.max_in_flight, int)
                                               or isinstance(self.max_in_flight, bool) or self.max_in_flight < 1):
            raise fail(f"max_in_flight must be a positive integer, got {self.max_in_flight!r}")
        if not _is_number(self.latency_ms) or self.latency_ms < 0:
            raise fail(f"latency_ms must be a non-negative number, got {self.latency_ms!r}")
        for name in ("error_rate", "hang_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 <= value <= 1:
                raise fail(f"{name} must be a number between 0 and 1, got {value!r}")
        if self.error_rate + self.hang_rate > 1:
            raise fail("error_rate + hang_rate must not exceed 1")
        if self.behaviour is not None and self.behaviour not in BEHAVIOURS:
            raise fail(f"behaviour must be one of {', '.join(BEHAVIOURS)}, got {self.behaviour!r}")
        try:
            self.settings  # noqa: B018 - validates the HTTP settings
        except ValueError as exc:
            raise fail(str(exc)) from None


def _read(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        with path.open("rb") as fh:
            return tomllib.load(fh)
    if suffix in (".yaml", ".yml"):
        try:
            return yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid YAML: {exc}") from exc
    raise ValueError(f"unsupported extension {path.suffix!r} (expected .toml, .yaml or .yml)")


def _region_config(region: Any, raw: Any) -> ProviderConfig:
    if not isinstance(region, str) or not region:
        raise ValueError(f"region names must be non-empty strings, got {region!r}")
    if not isinstance(raw, dict):
        raise ValueError(f"region {region!r}: expected a table of settings")
    kind = raw.get("provider")
    if kind not in KINDS:
        raise ValueError(f"region {region!r}: provider must be one of {', '.join(KINDS)}, got {kind!r}")
    unknown = sorted(set(raw) - set(_KEYS[kind]))
    if unknown:
        raise ValueError(
            f"region {region!r}: unknown key {unknown[0]!r} for provider {kind!r} (allowed: {', '.join(_KEYS[kind])})"
        )
    settings = {k: v for k, v in raw.items() if k != "api_key_env"}
    if "api_key_env" in raw:
        name = raw["api_key_env"]
        if not isinstance(name, str) or not name:
            raise ValueError(f"region {region!r}: api_key_env must be the name of an environment variable")
        if not os.environ.get(name):
            raise ValueError(f"region {region!r}: api_key_env names {name!r}, which is not set in the environment")
        settings["api_key"] = os.environ[name]
    return ProviderConfig(region=region, **settings)


def load_provider_configs(
    path: str | None,
    simulator_latency_ms: float = 20,
    simulator_error_rate: float = 0.0,
    simulator_hang_rate: float = 0.0,
) -> dict[str, ProviderConfig]:
    """Region -> config from ``path``; without a path, US, EU and APAC on the in-process simulator."""
    if path is None:
        return {
            region: ProviderConfig(
                region=region,
                provider="simulator",
                latency_ms=simulator_latency_ms,
                error_rate=simulator_error_rate,
                hang_rate=simulator_hang_rate,
            )
            for region in DEFAULT_REGIONS
        }
    try:
        doc = _read(Path(path))
        if not isinstance(doc, dict) or set(doc) != {"regions"} or not isinstance(doc["regions"], dict):
            raise ValueError("expected exactly one top-level table, 'regions', of region tables")
        if not doc["regions"]:
            raise ValueError("no regions configured")
        return {region: _region_config(region, raw) for region, raw in doc["regions"].items()}
    except ValueError as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"providers file {path}: {exc}") from exc


def build_provider(config: ProviderConfig, region_settings: Mapping[str, RegionSettings] | None = None) -> Provider:
    """The provider for ``config``.

    An HTTP provider gets ``region_settings`` (default: only this region's), so the router
    client can map a served region back to any configured region.
    """
    if config.provider == "simulator":
        behaviour = {config.region: config.behaviour} if config.behaviour else DEFAULT_REGION_BEHAVIOUR
        return SimulatorProvider(
            region_behaviour=behaviour,
            latency_ms=config.latency_ms,
            error_rate=config.error_rate,
            hang_rate=config.hang_rate,
            timeout_s=config.timeout_s,
        )
    mapped_by_go = config.region in GO_ROUTER_REGIONS or config.region in ROUTER_REGION_NAMES
    if config.router_region is None and not mapped_by_go:
        log.warning(
            "region %r has no router_region: it is sent as Go sent unknown regions, eu-west, with the "
            "European system prompt; set router_region (and system_prompt) in the providers file",
            config.region,
        )
    settings = {config.region: config.settings} if region_settings is None else dict(region_settings)
    settings[config.region] = config.settings
    cls = HybridRouterProvider if config.provider == "hybrid_router" else OpenAICompatProvider
    return cls(
        config.base_url,
        api_key=config.api_key,
        timeout_s=config.timeout_s,
        region_settings=settings,
    )


class UnknownRegion(KeyError):
    def __init__(self, region: str, configured: list[str]):
        super().__init__(region)
        self.region = region
        self.message = f"no provider configured for region {region!r} (configured: {', '.join(configured) or 'none'})"

    def __str__(self) -> str:
        return self.message


class ProviderRegistry:
    """The providers of all configured regions, each behind its own in-flight limit.

    Every region has one provider, so its ``threading.BoundedSemaphore`` of ``max_in_flight``
    (when the providers file sets one; unbounded otherwise) bounds direct callers; a worker's
    engine takes a slot of its non-blocking budget first (``inflight.RegionSlots``), so it never
    waits here. Safe to call from many threads.
    """

    def __init__(self, configs: Mapping[str, ProviderConfig]):
        for region, config in configs.items():
            if config.region != region:
                raise ValueError(f"config for region {config.region!r} filed under {region!r}")
        settings = {region: config.settings for region, config in configs.items()}
        self._providers = {region: build_provider(config, settings) for region, config in configs.items()}
        self._limits = {region: config.max_in_flight for region, config in configs.items()}
        self._slots = {region: threading.BoundedSemaphore(config.max_in_flight) if config.max_in_flight else None
                       for region, config in configs.items()}

    def regions(self) -> list[str]:
        return list(self._providers)

    def max_in_flight(self) -> dict[str, int | None]:
        """Region -> the providers file's ``max_in_flight`` (None where it sets none)."""
        return dict(self._limits)

    def get(self, region: str) -> Provider:
        try:
            return self._providers[region]
        except KeyError:
            raise UnknownRegion(region, self.regions()) from None

    def call(self, region: str, req: ProviderRequest) -> ProviderAnswer:
        """``get(region).complete(req)``, waiting for a free slot of the region first.

        The wait counts against the request's ``deadline``: with no slot free before it, or no
        time left once one is, the call is not made (``timeout`` at stage ``connect``).
        """
        if req.region != region:
            raise ValueError(f"request for region {req.region!r} sent to region {region!r}")
        provider = self.get(region)
        slot = self._slots[region]
        if slot is None:
            return provider.complete(req)
        wait = None if req.deadline is None else req.deadline - time.monotonic()
        if wait is not None and (wait <= 0 or not slot.acquire(timeout=wait)):
            raise ProviderError("timeout", "connect", region, req.model_id, provider.name,
                                "no time left for the call (waiting for a free slot of the region)")
        if wait is None:
            slot.acquire()
        try:
            if req.deadline is not None and req.deadline <= time.monotonic():
                raise ProviderError("timeout", "connect", region, req.model_id, provider.name,
                                    "no time left for the call once a slot of the region was free")
            return provider.complete(req)
        finally:
            slot.release()
