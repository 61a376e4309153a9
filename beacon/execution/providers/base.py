"""The provider interface: one request in, one answer out, or a classified ProviderError."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

#: Where in a call a failure happened.
STAGES = ("connect", "request", "response", "parse")

_CODE = re.compile(r"timeout|network|bad_response|http_[1-5][0-9][0-9]")


@dataclass(frozen=True)
class ProviderRequest:
    region: str
    model_id: str
    prompt: str
    question_id: str
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0


@dataclass(frozen=True)
class ProviderAnswer:
    output: str
    served_region: str
    provider: str
    model_id: str
    latency_ms: int


def is_transient(code: str) -> bool:
    """Timeouts, network failures, HTTP 429 and 5xx may succeed on retry; anything else will not."""
    return code in ("timeout", "network", "http_429") or code.startswith("http_5")


class ProviderError(Exception):
    """A failed call, recorded on the unit as :meth:`to_dict`.

    ``code`` is ``"timeout"``, ``"network"``, ``"http_<status>"`` or ``"bad_response"``;
    ``transient`` follows from it (see :func:`is_transient`). ``stage`` is one of :data:`STAGES`.
    The arguments are kept in ``args`` so the error pickles (e.g. through a Celery result).
    """

    def __init__(self, code: str, stage: str, region: str, model: str, provider: str, message: str):
        if not _CODE.fullmatch(code):
            raise ValueError(f"unknown provider error code {code!r}")
        if stage not in STAGES:
            raise ValueError(f"unknown provider error stage {stage!r}")
        super().__init__(code, stage, region, model, provider, message)
        self.code = code
        self.transient = is_transient(code)
        self.stage = stage
        self.region = region
        self.model = model
        self.provider = provider
        self.message = message

    def __str__(self) -> str:
        return f"{self.provider} {self.region}/{self.model}: {self.code} at {self.stage}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "code": self.code,
            "transient": self.transient,
            "stage": self.stage,
            "region": self.region,
            "model": self.model,
            "provider": self.provider,
            "message": self.message,
        }


class Provider(ABC):
    """Answers prompts for one region. Implementations must be safe to call from several threads."""

    name: str

    @abstractmethod
    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        """Return the model's answer, or raise :class:`ProviderError`."""
