"""The configured regions and their providers, read from ``PROVIDERS_FILE`` once per process.

Everything that needs the regions (ingest's region check, queue names, metrics, Sentry's
secret list, the engine's provider calls) asks here; nothing else parses the file.
"""

from __future__ import annotations

from functools import lru_cache

from beacon.execution.providers import ProviderRegistry, load_provider_configs
from beacon.settings import Settings


@lru_cache(maxsize=4)
def provider_configs(settings: Settings) -> dict:
    """Region name → its provider configuration (the built-in simulator for US, EU, APAC by default)."""
    return load_provider_configs(
        settings.providers_file,
        simulator_latency_ms=settings.simulator_latency_ms,
        simulator_error_rate=settings.simulator_error_rate,
        simulator_hang_rate=settings.simulator_hang_rate,
    )


def region_names(settings: Settings) -> list[str]:
    return sorted(provider_configs(settings))


@lru_cache(maxsize=4)
def provider_registry(settings: Settings) -> ProviderRegistry:
    """The process's providers, one per configured region (built once per settings)."""
    return ProviderRegistry(provider_configs(settings))
