"""The provider interface: one request in, one answer out, or a classified ProviderError."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from .bounded_call import Abort

#: Where in a call a failure happened.
STAGES = ("connect", "request", "response", "parse")

_CODE = re.compile(r"timeout|network|bad_response|answer_too_large|aborted|http_[1-5][0-9][0-9]")

#: The default cap on a provider's answer (the ``MAX_ANSWER_BYTES`` setting's default).
DEFAULT_MAX_ANSWER_BYTES = 256 * 1024
#: How many bytes of an oversized answer a failure keeps for diagnosis.
ANSWER_HEAD_BYTES = 1024


@dataclass(frozen=True)
class ProviderRequest:
    """One question for one region's model.

    ``prompt`` is the bare question; the HTTP providers add the region's system prompt. They
    send the region's configured ``temperature``/``max_tokens`` (the providers file, defaulting to
    the Go runner's 0.1 and 500); this request's two fields are not read by any provider.
    ``trace_id``, when given, is sent to the hybrid router as ``X-Trace-Id``; without it the router
    client makes a fresh one per call.

    Bounds of the call: ``timeout_s`` (capped by the provider's own ``timeout_s``), and, when
    given, ``deadline``, a :func:`time.monotonic` value the whole call (waiting for a slot of the
    region included) must end by: the engine sets it to the earliest of the provider timeout,
    the job's deadline and the unit's lease less its margin (``beacon.execution.engine``).
    ``max_answer_bytes`` caps the answer's body (larger: ``answer_too_large``). ``abort``, when
    given, cuts the call off once triggered (:class:`ProviderAborted`).
    """

    region: str
    model_id: str
    prompt: str
    question_id: str
    temperature: float = 0.0
    max_tokens: int = 256
    timeout_s: float = 120.0
    trace_id: str | None = None
    deadline: float | None = None
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES
    abort: Abort | None = field(default=None, compare=False, repr=False)

    def call_deadline(self, provider_timeout_s: float = float("inf")) -> float:
        """The monotonic time this call must end by: ``deadline``, capped by the timeouts."""
        bound = time.monotonic() + min(self.timeout_s, provider_timeout_s)
        return bound if self.deadline is None else min(bound, self.deadline)


@dataclass(frozen=True)
class ProviderAnswer:
    """A model's answer.

    ``provider`` is the name of the client that made the call ("hybrid_router", "openai",
    "simulator"), never the backend behind it. The optional fields are what the backend reported;
    they are ``None`` when it reported nothing (always, for the simulator in-process):

    - ``provider_used``: the hybrid router's ``provider_used``, the backend that actually ran the
      model (e.g. "modal-us-east"). The Go runner stored this as the execution's provider, so the
      engine should record it as the provider name when present, else ``provider``.
    - ``router_region``: the region string the router reported (``metadata.region``, else a
      top-level ``region``), unmapped. ``served_region`` is it mapped back to one of our region
      names through the router region mapping (e.g. "eu-west" -> "EU"), or the requested region
      when the router reported none.
    - ``region_flag``: ``None`` when the served region is the requested one; ``"mismatch"`` when the
      router served another known region; ``"unknown"`` when its value maps to no region (then
      ``served_region`` is that raw value, kept as evidence).
    - ``provider_receipt``: the router's ``metadata.receipt`` (the backend's execution receipt), as
      a dict; a receipt sent as a JSON string is decoded, any other value is kept as ``{"raw": value}``.
    - ``provider_metadata``: the router's whole ``metadata`` object.
    - ``trace_id``: the ``X-Trace-Id`` sent with the call.
    - ``finish_reason``: why the model stopped, as the OpenAI-compatible endpoint said
      (``choices[0].finish_reason``: "stop", "length", …).
    - ``truncated``: ``True`` when it stopped at the token limit (``finish_reason`` "length"): the
      answer is kept as it is, marked as cut short.
    - ``usage``: the endpoint's token counts, ``{"prompt_tokens": int, "completion_tokens": int}``
      (each ``None`` when not reported).
    """

    output: str
    served_region: str
    provider: str
    provider_used: str | None = None
    router_region: str | None = None
    region_flag: str | None = None
    provider_receipt: dict | None = None
    provider_metadata: dict | None = None
    trace_id: str | None = None
    finish_reason: str | None = None
    truncated: bool = False
    usage: dict | None = None


def is_transient(code: str) -> bool:
    """Timeouts, network failures, HTTP 429 and 5xx may succeed on retry; anything else will not.

    ``aborted`` (the worker cut the call off: shutdown, or the job ended) is transient: the unit
    was not at fault and another worker may run it.
    """
    return code in ("timeout", "network", "http_429", "aborted") or code.startswith("http_5")


class ProviderError(Exception):
    """A failed call, recorded on the unit as :meth:`to_dict`.

    ``code`` is ``"timeout"``, ``"network"``, ``"http_<status>"``, ``"bad_response"``,
    ``"answer_too_large"`` (the body exceeded ``max_answer_bytes``) or ``"aborted"``
    (:class:`ProviderAborted`); ``transient`` follows from it (see :func:`is_transient`).
    ``stage`` is one of :data:`STAGES`. ``details`` holds extra JSON-able facts for the record
    (e.g. the first bytes of an oversized answer). The arguments are kept in ``args`` so the
    error pickles (e.g. through a Celery result).
    """

    def __init__(self, code: str, stage: str, region: str, model: str, provider: str, message: str,
                 details: dict[str, Any] | None = None):
        if not _CODE.fullmatch(code):
            raise ValueError(f"unknown provider error code {code!r}")
        if stage not in STAGES:
            raise ValueError(f"unknown provider error stage {stage!r}")
        super().__init__(code, stage, region, model, provider, message, details)
        self.code = code
        self.transient = is_transient(code)
        self.stage = stage
        self.region = region
        self.model = model
        self.provider = provider
        self.message = message
        self.details = dict(details or {})

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
            **self.details,
        }


class ProviderAborted(ProviderError):
    """The call was cut off by its :class:`~.bounded_call.Abort`; ``reason`` is the trigger's.

    Not a provider failure: the engine hands the unit back (a worker shutting down) or drops it
    (its job ended), and records no failure.
    """

    def __init__(self, stage: str, region: str, model: str, provider: str, reason: str):
        super().__init__("aborted", stage, region, model, provider, f"call aborted: {reason}", {"reason": reason})
        self.args = (stage, region, model, provider, reason)
        self.reason = reason


class Provider(ABC):
    """Answers prompts for one region. Implementations must be safe to call from several threads."""

    name: str

    @abstractmethod
    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        """Return the model's answer, or raise :class:`ProviderError`."""
