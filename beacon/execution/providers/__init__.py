"""Model providers: the interface, the HTTP clients, the offline simulator and per-region selection."""

from .base import STAGES, Provider, ProviderAnswer, ProviderError, ProviderRequest, is_transient
from .config import (
    KINDS,
    ProviderConfig,
    ProviderRegistry,
    UnknownRegion,
    build_provider,
    load_provider_configs,
)
from .http_clients import HybridRouterProvider, OpenAICompatProvider
from .simulator import (
    BEHAVIOURS,
    DEFAULT_REGION_BEHAVIOUR,
    SimulatorProvider,
    SimulatorServer,
    make_simulator_app,
    serve_simulator,
    simulate_answer,
)

__all__ = [
    "BEHAVIOURS",
    "DEFAULT_REGION_BEHAVIOUR",
    "KINDS",
    "STAGES",
    "HybridRouterProvider",
    "OpenAICompatProvider",
    "Provider",
    "ProviderAnswer",
    "ProviderConfig",
    "ProviderError",
    "ProviderRegistry",
    "ProviderRequest",
    "SimulatorProvider",
    "SimulatorServer",
    "UnknownRegion",
    "build_provider",
    "is_transient",
    "load_provider_configs",
    "make_simulator_app",
    "serve_simulator",
    "simulate_answer",
]
