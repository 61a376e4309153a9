"""HTTP providers: the Beacon hybrid router (the Go runner's protocol) and OpenAI-compatible chat.

Every call is one :func:`~.bounded_call.post_json`: one connection (no pool), one total
deadline covering connect, send and the whole answer, a cap on the answer's size, and an
optional :class:`~.bounded_call.Abort`. The deadline is the request's
(:meth:`ProviderRequest.call_deadline`: its ``deadline`` when given, capped by the request's
``timeout_s`` and the provider's); the cap is the request's ``max_answer_bytes``
(``MAX_ANSWER_BYTES``). Failures become :class:`ProviderError`:

=================================================  ================  ==========
what happened                                      code              stage
=================================================  ================  ==========
deadline passed while connecting (TCP, TLS)        timeout           connect
deadline passed while sending the request          timeout           request
no (complete) response before the deadline         timeout           response
connection refused / unreachable / unresolvable    network           connect
connection dropped during the exchange             network           request
bad status line or headers, body broken off        network           response
body over ``max_answer_bytes``                     answer_too_large  response
the call's Abort was triggered                     aborted           (where it was)
non-2xx status                                     http_<status>     response
body not JSON, or no answer in it                  bad_response      parse
=================================================  ================  ==========

``answer_too_large`` is permanent and keeps the answer's first bytes for diagnosis in its
details (``answer_head``, :data:`~.base.ANSWER_HEAD_BYTES` at most, decoded leniently) with
``answer_limit``, ``answer_bytes_read`` and, when the server declared one,
``answer_declared_bytes``. ``aborted`` raises :class:`ProviderAborted`. An invalid URL is a
configuration bug and raises ``ValueError``.

What is sent per region (:class:`RegionSettings`, set in the providers file) defaults to what
the Go runner (``runner-app``) sent: temperature 0.1, at most 500 tokens, the router region from
:data:`GO_ROUTER_REGIONS`, and Go's regional system prompt (:func:`go_system_prompt`). The
router gets the prompt in Go's ``system/user/assistant`` text form (:func:`format_router_prompt`);
an OpenAI-compatible endpoint gets the system prompt as a ``system`` message. See
``docs/providers.md``.
"""

from __future__ import annotations

import json
import threading
import uuid
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import bounded_call
from .base import ANSWER_HEAD_BYTES, Provider, ProviderAborted, ProviderAnswer, ProviderError, ProviderRequest

_SNIPPET = 200  # characters of a response body quoted in an error message

# --------------------------------------------------------------------------- Go's per-region values

#: Our region -> the router's ``region_preference``, as Go's ``mapRegionToRouter``.
GO_ROUTER_REGIONS: Mapping[str, str] = {
    "US": "us-east", "EU": "eu-west", "APAC": "asia-pacific", "ASIA": "asia-pacific",
}
#: Router region names Go passed through unchanged.
ROUTER_REGION_NAMES = ("us-east", "eu-west", "asia-pacific")
#: Go sent any other region as this.
FALLBACK_ROUTER_REGION = "eu-west"
#: Router region -> canonical region, for reading back the region the router reports.
DEFAULT_REGION_OF_ROUTER: Mapping[str, str] = {"us-east": "US", "eu-west": "EU", "asia-pacific": "APAC"}

DEFAULT_TEMPERATURE = 0.1
DEFAULT_MAX_TOKENS = 500

#: Go's regional system prompt; ``{place}`` is the region's place name.
SYSTEM_PROMPT_TEMPLATE = (
    "You are a helpful, honest, and harmless AI assistant based in {place}. Answer questions directly "
    "and factually. For sensitive political topics, provide balanced, factual information from "
    "multiple perspectives."
)
#: Router region (or region) -> the place named in the system prompt, as Go's ``formatRegionalPrompt``.
PLACES: Mapping[str, str] = {
    "us-east": "the US", "us-central": "the US", "us-west": "the US", "US": "the US",
    "eu-west": "Europe", "eu-central": "Europe", "EU": "Europe",
    "asia-pacific": "Asia", "asia-southeast": "Asia", "APAC": "Asia", "ASIA": "Asia",
}
DEFAULT_PLACE = "the US"

#: The router's inference paths, tried in this order while they answer 404 (as Go did).
ROUTER_PATHS = ("/inference", "/api/v1/inference", "/api/inference", "/v1/inference")


def go_router_region(region: str) -> str:
    """The ``region_preference`` Go sent for ``region`` (unknown regions: ``eu-west``, as Go)."""
    if region in GO_ROUTER_REGIONS:
        return GO_ROUTER_REGIONS[region]
    return region if region in ROUTER_REGION_NAMES else FALLBACK_ROUTER_REGION


def go_system_prompt(router_region: str) -> str:
    """Go's regional system prompt for a router region ("the US" for one it does not know)."""
    return SYSTEM_PROMPT_TEMPLATE.format(place=PLACES.get(router_region, DEFAULT_PLACE))


def format_router_prompt(system_prompt: str, question: str) -> str:
    """The router's ``prompt``: Go's ``system\\n<system>\\nuser\\n<question>\\nassistant\\n``.

    An empty system prompt sends the bare question.
    """
    if not system_prompt:
        return question
    return f"system\n{system_prompt}\nuser\n{question}\nassistant\n"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class RegionSettings:
    """What the HTTP providers send for one region; the defaults are Go's.

    ``router_region`` (default: :func:`go_router_region` of the region) is the hybrid router's
    ``region_preference``; it also picks the place in the default system prompt, for both
    providers. ``system_prompt`` (default: :func:`go_system_prompt`) may be ``""`` for none.
    """

    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = DEFAULT_MAX_TOKENS
    router_region: str | None = None
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be a number between 0 and 2, got {self.temperature!r}")
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise ValueError(f"max_tokens must be a positive integer, got {self.max_tokens!r}")
        if self.router_region is not None and (not isinstance(self.router_region, str) or not self.router_region):
            raise ValueError(f"router_region must be a non-empty string, got {self.router_region!r}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError(f"system_prompt must be a string, got {self.system_prompt!r}")

    def router_region_for(self, region: str) -> str:
        return self.router_region or go_router_region(region)

    def system_prompt_for(self, region: str) -> str:
        if self.system_prompt is not None:
            return self.system_prompt
        return go_system_prompt(self.router_region_for(region))


DEFAULT_SETTINGS = RegionSettings()


class _HttpProvider(Provider):
    """``region_settings`` maps regions to :class:`RegionSettings`; other regions get Go's defaults.

    Each call has its own connection; the registry's ``max_in_flight`` slots bound the calls in
    flight per region.
    """

    path: str

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        region_settings: Mapping[str, RegionSettings] | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.region_settings: dict[str, RegionSettings] = dict(region_settings or {})
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def settings_for(self, region: str) -> RegionSettings:
        return self.region_settings.get(region, DEFAULT_SETTINGS)

    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        fields = self._exchange(req)
        return ProviderAnswer(
            provider=self.name,
            **fields,
        )

    @abstractmethod
    def _exchange(self, req: ProviderRequest) -> dict:
        """Make the call; the answer's fields other than provider, model_id and latency_ms."""

    def _error(
        self, req: ProviderRequest, code: str, stage: str, message: str, trace_id: str | None = None
    ) -> ProviderError:
        if trace_id:
            message = f"{message} [X-Trace-Id {trace_id}]"
        return ProviderError(code, stage, req.region, req.model_id, self.name, message)

    def _send(
        self, req: ProviderRequest, url: str, payload: dict, headers: dict, trace_id: str | None = None,
        deadline: float | None = None,
    ) -> bounded_call.Response:
        """POST ``payload`` by ``deadline`` (default: the request's); transport failures become
        ProviderError, any status is returned."""
        deadline = req.call_deadline(self.timeout_s) if deadline is None else deadline
        try:
            return bounded_call.post_json(url, payload, headers={**self._auth, **headers}, deadline=deadline,
                                          max_bytes=req.max_answer_bytes, abort=req.abort)
        except bounded_call.CallAborted as exc:
            raise ProviderAborted(exc.stage, req.region, req.model_id, self.name, exc.reason) from exc
        except bounded_call.CallTimeout as exc:
            what = {"connect": "could not connect to", "request": "could not send the request to"}.get(
                exc.stage, "no response from")
            raise self._error(req, "timeout", exc.stage, f"{what} {url} before the call's deadline "
                              f"({self._budget(req):g}s budget)", trace_id) from exc
        except bounded_call.CallNetworkError as exc:
            raise self._error(req, "network", exc.stage, f"{url}: {exc.message}", trace_id) from exc
        except bounded_call.TooLarge as exc:
            details = {"answer_head": exc.head[:ANSWER_HEAD_BYTES].decode("utf-8", errors="replace"),
                       "answer_limit": exc.limit, "answer_bytes_read": exc.received}
            if exc.declared is not None:
                details["answer_declared_bytes"] = exc.declared
            error = self._error(req, "answer_too_large", "response", f"{url}: {exc.message}", trace_id)
            error.details.update(details)
            raise error from exc

    def _budget(self, req: ProviderRequest) -> float:
        return min(req.timeout_s, self.timeout_s)

    def _decode(self, req: ProviderRequest, url: str, response: bounded_call.Response,
                trace_id: str | None = None) -> Any:
        """The JSON body of a 2xx response, or ProviderError."""
        status, snippet = response.status, _text(response)[:_SNIPPET]
        if not 200 <= status < 300:
            raise self._error(req, f"http_{status}", "response", f"{url} answered {status}: {snippet}", trace_id)
        try:
            return response.json()
        except ValueError as exc:
            raise self._error(req, "bad_response", "parse", f"{url} answered non-JSON: {snippet!r}", trace_id) from exc


def _text(response: bounded_call.Response) -> str:
    """The body as text, for messages (the declared charset, else UTF-8; never fails)."""
    charset = response.headers.get_content_charset() or "utf-8"
    try:
        return response.body.decode(charset, errors="replace")
    except LookupError:
        return response.body.decode("utf-8", errors="replace")


def _receipt(value: Any) -> dict | None:
    """``metadata.receipt`` as a dict (Go stored it as JSON, decoding a string receipt)."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    return {"raw": value}


class HybridRouterProvider(_HttpProvider):
    """The Beacon hybrid router, called as the Go runner called it.

    ``POST {base_url}/inference``; on 404, ``/api/v1/inference``, ``/api/inference`` and
    ``/v1/inference`` in turn (:data:`ROUTER_PATHS`). The first path that answers 2xx is
    remembered for this instance and tried first from then on (a 404 there probes the others
    again). Any other status or failure ends the call at once: unlike Go, which also tried the
    remaining paths after a non-404 error and then reported the last path's 404, hiding e.g. a 503.

    The body is Go's ``{model, prompt, temperature, max_tokens, region_preference, cost_priority}``
    (``cost_priority`` false) with the region's :class:`RegionSettings`; headers ``Accept:
    application/json`` and ``X-Trace-Id`` (the request's ``trace_id``, else a fresh one per call).

    Reading the answer: ``success: false`` is a ``bad_response`` carrying the router's ``error``.
    The output is ``response`` (else ``output`` or ``text``: first string wins). ``provider_used``,
    ``metadata.region`` (else a top-level ``region``) and ``metadata.receipt`` fill the
    :class:`ProviderAnswer` fields of those names; the reported region is mapped back to one of
    our regions (this region's own router region, else another configured region's, else
    :data:`DEFAULT_REGION_OF_ROUTER`), and flagged when it is another region or unknown.
    """

    name = "hybrid_router"
    paths = ROUTER_PATHS
    path = ROUTER_PATHS[0]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._working_path: str | None = None
        self._region_of_router = self._reverse_table()

    @property
    def working_path(self) -> str | None:
        """The path that last answered 2xx, or None before any did."""
        with self._lock:
            return self._working_path

    def _reverse_table(self) -> dict[str, str]:
        """Reported region -> our region: explicit router regions first, then Go's mapping."""
        table: dict[str, str] = {}
        for region, settings in self.region_settings.items():
            if settings.router_region:
                table.setdefault(settings.router_region, region)
        for region in self.region_settings:
            if region in GO_ROUTER_REGIONS:
                table.setdefault(GO_ROUTER_REGIONS[region], region)
        for router_region, region in DEFAULT_REGION_OF_ROUTER.items():
            table.setdefault(router_region, region)
        for region in (*self.region_settings, *GO_ROUTER_REGIONS):  # a router may report our names
            table.setdefault(region, region)
        return table

    def _payload(self, req: ProviderRequest) -> dict:
        settings = self.settings_for(req.region)
        return {
            "model": req.model_id,
            "prompt": format_router_prompt(settings.system_prompt_for(req.region), req.prompt),
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "region_preference": settings.router_region_for(req.region),
            "cost_priority": False,
        }

    def _path_order(self) -> tuple[str, ...]:
        known = self.working_path
        if known is None:
            return self.paths
        return (known, *(p for p in self.paths if p != known))

    def _exchange(self, req: ProviderRequest) -> dict:
        trace_id = req.trace_id or uuid.uuid4().hex
        payload = self._payload(req)
        headers = {"Accept": "application/json", "X-Trace-Id": trace_id}
        missing = []
        deadline = req.call_deadline(self.timeout_s)  # one budget for every path tried
        for path in self._path_order():
            url = self.base_url + path
            response = self._send(req, url, payload, headers, trace_id, deadline)
            if response.status == 404:
                missing.append(f"{path}: {_text(response)[:_SNIPPET]}")
                continue
            body = self._decode(req, url, response, trace_id)
            with self._lock:
                self._working_path = path
            return self._read(req, body, trace_id)
        raise self._error(
            req, "http_404", "response",
            f"{self.base_url} answered 404 on every inference path ({'; '.join(missing)})", trace_id,
        )

    def _read(self, req: ProviderRequest, body: Any, trace_id: str) -> dict:
        def bad(message: str) -> ProviderError:
            return self._error(req, "bad_response", "parse", message, trace_id)

        if not isinstance(body, dict):
            raise bad(f"expected a JSON object, got {type(body).__name__}")
        if body.get("success") is False:
            raise bad(f"router reported failure: {body.get('error')!r}")
        output = next((body[k] for k in ("response", "output", "text") if isinstance(body.get(k), str)), None)
        if output is None:
            raise bad("no string response, output or text in the answer")
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else None
        reported = next(
            (v for v in ((metadata or {}).get("region"), body.get("region")) if isinstance(v, str) and v), None
        )
        served_region, flag = self._served_region(req.region, reported)
        provider_used = body.get("provider_used")
        return {
            "output": output,
            "served_region": served_region,
            "provider_used": provider_used if isinstance(provider_used, str) and provider_used else None,
            "router_region": reported,
            "region_flag": flag,
            "provider_receipt": _receipt(metadata.get("receipt")) if metadata else None,
            "provider_metadata": metadata,
            "trace_id": trace_id,
        }

    def _served_region(self, region: str, reported: str | None) -> tuple[str, str | None]:
        if reported is None or reported in (region, self.settings_for(region).router_region_for(region)):
            return region, None
        if reported in self._region_of_router:
            return self._region_of_router[reported], "mismatch"
        return reported, "unknown"


class OpenAICompatProvider(_HttpProvider):
    """OpenAI-compatible ``POST {base_url}/v1/chat/completions``; the answer is ``choices[0].message.content``.

    Sends the region's :class:`RegionSettings`: the system prompt as a ``system`` message
    (none when it is ``""``), the question as the ``user`` message, ``temperature`` and
    ``max_tokens``; and ``X-Beacon-Region: <region>`` (the simulator reads it; real endpoints
    ignore it). The served region is the requested one: the endpoint is configured per region.

    What a real server (llama.cpp, vLLM, Ollama, a hosted API) adds is read too, by :meth:`_parse`:
    ``choices[0].finish_reason`` ("length" marks the answer ``truncated``: kept, cut short at
    ``max_tokens``) and ``usage.prompt_tokens``/``usage.completion_tokens``. A prompt longer than
    the model's context is the server's 400 (llama.cpp: ``context_length_exceeded``), a permanent
    ``http_400``; a server still loading its model refuses connections, a transient ``network``.
    """

    name = "openai"
    path = "/v1/chat/completions"

    def _payload(self, req: ProviderRequest) -> dict:
        settings = self.settings_for(req.region)
        system = settings.system_prompt_for(req.region)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": req.prompt})
        return {
            "model": req.model_id,
            "messages": messages,
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
        }

    def _exchange(self, req: ProviderRequest) -> dict:
        url = self.base_url + self.path
        body = self._decode(req, url, self._send(req, url, self._payload(req), {"X-Beacon-Region": req.region}))
        return self._parse(req, body)

    def _parse(self, req: ProviderRequest, body: Any) -> dict:
        """The answer's fields from a 2xx body: output, served region, finish reason, token usage."""
        try:
            choice = body["choices"][0]
            content = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(req, "bad_response", "parse", "no choices[0].message.content in the answer") from exc
        if not isinstance(content, str):
            raise self._error(req, "bad_response", "parse", f"choices[0].message.content is {type(content).__name__}")
        finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        finish_reason = finish_reason[:32] if isinstance(finish_reason, str) and finish_reason else None
        usage = body.get("usage") if isinstance(body, dict) else None
        tokens = None
        if isinstance(usage, dict):
            tokens = {k: self._token_count(usage.get(k)) for k in ("prompt_tokens", "completion_tokens")}
            if tokens == {"prompt_tokens": None, "completion_tokens": None}:
                tokens = None
        return {"output": content, "served_region": req.region, "finish_reason": finish_reason,
                "truncated": finish_reason == "length", "usage": tokens}

    @staticmethod
    def _token_count(value: Any) -> int | None:
        """A reported token count: a non-negative integer (below 2^31, the column's range), else None."""
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
            return value
        return None
