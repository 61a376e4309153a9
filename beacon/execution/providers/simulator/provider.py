"""The simulator as an in-process provider, with its latency, failure and hang dice."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..base import Provider, ProviderAborted, ProviderAnswer, ProviderError, ProviderRequest
from .answers import BEHAVIOURS, DEFAULT_REGION_BEHAVIOUR, PROVIDER_NAME, simulate_answer


def check_rates(error_rate: float, hang_rate: float) -> None:
    for name, rate in (("error_rate", error_rate), ("hang_rate", hang_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    if error_rate + hang_rate > 1.0:
        raise ValueError(f"error_rate + hang_rate must not exceed 1, got {error_rate + hang_rate}")


def check_latency(latency_ms: float) -> None:
    if not non_negative_number(latency_ms):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency_ms!r}")


def non_negative_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def check_behaviour(region_behaviour: Mapping[str, str]) -> None:
    unknown = sorted(set(region_behaviour.values()) - set(BEHAVIOURS))
    if unknown:
        raise ValueError(f"unknown region behaviour {unknown[0]!r} (expected one of {', '.join(BEHAVIOURS)})")


class FaultDice:
    """One roll per call: "hang" with hang_rate, "error" with error_rate, else None. Seedable."""

    def __init__(self, error_rate: float, hang_rate: float, seed: int | None):
        check_rates(error_rate, hang_rate)
        self._error_rate = error_rate
        self._hang_rate = hang_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self) -> str | None:
        with self._lock:
            r = self._rng.random()
        if r < self._hang_rate:
            return "hang"
        if r < self._hang_rate + self._error_rate:
            return "error"
        return None


class SimulatorProvider(Provider):
    """The simulator in-process. ``served_region`` is the requested region.

    A hang blocks for the call's timeout (``req.timeout_s`` capped by ``timeout_s``) and then
    raises ``timeout``; an error raises a transient ``http_503``.
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        region_behaviour: Mapping[str, str] = DEFAULT_REGION_BEHAVIOUR,
        latency_ms: float = 20,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        seed: int | None = None,
        timeout_s: float = 120.0,
    ):
        check_behaviour(region_behaviour)
        check_latency(latency_ms)
        self.region_behaviour = dict(region_behaviour)
        self.latency_ms = latency_ms
        self.timeout_s = timeout_s
        self._dice = FaultDice(error_rate, hang_rate, seed)

    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        started = time.monotonic()
        deadline = started + min(req.timeout_s, self.timeout_s)
        if req.deadline is not None:
            deadline = min(deadline, req.deadline)
        fault = self._dice.roll()
        if fault == "hang":
            timeout = max(0.0, deadline - started)
            self._wait(req, timeout)
            raise self._error(req, "timeout", f"no answer within {timeout:g}s (simulated hang)")
        latency = self.latency_ms / 1000
        if started + latency > deadline:  # the answer would come after the deadline
            self._wait(req, max(0.0, deadline - started))
            raise self._error(req, "timeout", f"no answer within {max(0.0, deadline - started):g}s")
        self._wait(req, latency)  # simulated model latency
        if fault == "error":
            raise self._error(req, "http_503", "simulated service unavailable")
        output = simulate_answer(req.region, req.model_id, req.prompt, self.region_behaviour)
        if len(output.encode()) > req.max_answer_bytes:
            raise ProviderError("answer_too_large", "response", req.region, req.model_id, self.name,
                                f"answer over {req.max_answer_bytes} bytes",
                                {"answer_head": output[:1024], "answer_limit": req.max_answer_bytes})
        return ProviderAnswer(
            output=output,
            served_region=req.region,
            provider=self.name,
        )

    def _wait(self, req: ProviderRequest, seconds: float) -> None:
        """Sleep ``seconds``, cut short (ProviderAborted) when the request's abort is triggered."""
        if req.abort is None:
            time.sleep(seconds)
        elif req.abort.wait(seconds):
            raise ProviderAborted("response", req.region, req.model_id, self.name, req.abort.reason or "aborted")

    def _error(self, req: ProviderRequest, code: str, message: str) -> ProviderError:
        return ProviderError(code, "response", req.region, req.model_id, self.name, message)


