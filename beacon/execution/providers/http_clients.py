"""HTTP providers: the Beacon hybrid router and OpenAI-compatible chat completions.

Each provider keeps one ``requests.Session`` (connection reuse; its pool sized for the calls
allowed in flight). A call's timeout, for connecting and for each read, is the request's
``timeout_s`` capped by the provider's. Failures become :class:`ProviderError`:

======================================  ================  ==========
what happened                           code              stage
======================================  ================  ==========
connect timed out                       timeout           connect
no response in time                     timeout           response
connection refused / unresolvable       network           connect
connection dropped during the exchange  network           request
body broken off or undecodable          network           response
non-2xx status                          http_<status>     response
body not JSON, or no answer in it       bad_response      parse
======================================  ================  ==========

Other ``requests`` errors (an invalid URL, say) are configuration bugs and propagate.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import NewConnectionError

from .base import Provider, ProviderAnswer, ProviderError, ProviderRequest

_SNIPPET = 200  # characters of a response body quoted in an error message


def _connection_stage(exc: requests.ConnectionError) -> str:
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return "connect" if isinstance(reason, NewConnectionError) else "request"


class _HttpProvider(Provider):
    path: str

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 120.0, pool_size: int = 10):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        started = time.monotonic()
        body = self._post(req)
        output, served_region = self._parse(req, body)
        return ProviderAnswer(
            output=output,
            served_region=served_region,
            provider=self.name,
            model_id=req.model_id,
            latency_ms=round((time.monotonic() - started) * 1000),
        )

    @abstractmethod
    def _payload(self, req: ProviderRequest) -> dict:
        """The JSON body to post."""

    def _headers(self, req: ProviderRequest) -> dict:
        return {}

    @abstractmethod
    def _parse(self, req: ProviderRequest, body: Any) -> tuple[str, str]:
        """(output, served_region) from the decoded JSON body, or raise bad_response."""

    def _error(self, req: ProviderRequest, code: str, stage: str, message: str) -> ProviderError:
        return ProviderError(code, stage, req.region, req.model_id, self.name, message)

    def _post(self, req: ProviderRequest) -> Any:
        timeout = min(req.timeout_s, self.timeout_s)
        url = self.base_url + self.path
        try:
            response = self._session.post(
                url, json=self._payload(req), headers=self._headers(req), timeout=(timeout, timeout)
            )
        except requests.ConnectTimeout as exc:
            raise self._error(req, "timeout", "connect", f"could not connect to {url} within {timeout:g}s") from exc
        except requests.Timeout as exc:
            raise self._error(req, "timeout", "response", f"no response from {url} within {timeout:g}s") from exc
        except requests.ConnectionError as exc:
            raise self._error(req, "network", _connection_stage(exc), f"{url}: {exc}") from exc
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
            raise self._error(req, "network", "response", f"{url}: {exc}") from exc
        status, snippet = response.status_code, response.text[:_SNIPPET]
        if not 200 <= status < 300:
            raise self._error(req, f"http_{status}", "response", f"{url} answered {status}: {snippet}")
        try:
            return response.json()
        except ValueError as exc:
            raise self._error(req, "bad_response", "parse", f"{url} answered non-JSON: {snippet!r}") from exc


class HybridRouterProvider(_HttpProvider):
    """The Beacon router: ``POST {base_url}/inference``.

    The answer is read from ``response``, ``output`` or ``text`` (first string wins); the
    served region from ``region`` when present, else the requested region.
    """

    name = "hybrid_router"
    path = "/inference"

    def _payload(self, req: ProviderRequest) -> dict:
        return {
            "model": req.model_id,
            "prompt": req.prompt,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "region_preference": req.region,
        }

    def _parse(self, req: ProviderRequest, body: Any) -> tuple[str, str]:
        if not isinstance(body, dict):
            raise self._error(req, "bad_response", "parse", f"expected a JSON object, got {type(body).__name__}")
        if body.get("success") is False:
            raise self._error(req, "bad_response", "parse", f"router reported failure: {body.get('error')!r}")
        output = next((body[k] for k in ("response", "output", "text") if isinstance(body.get(k), str)), None)
        if output is None:
            raise self._error(req, "bad_response", "parse", "no string response, output or text in the answer")
        region = body.get("region")
        return output, region if isinstance(region, str) and region else req.region


class OpenAICompatProvider(_HttpProvider):
    """OpenAI-compatible ``POST {base_url}/v1/chat/completions``; the answer is ``choices[0].message.content``.

    Sends ``X-Beacon-Region: <region>`` (the simulator reads it; real endpoints ignore it).
    The served region is the requested one: the endpoint is configured per region.
    """

    name = "openai"
    path = "/v1/chat/completions"

    def _payload(self, req: ProviderRequest) -> dict:
        return {
            "model": req.model_id,
            "messages": [{"role": "user", "content": req.prompt}],
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
        }

    def _headers(self, req: ProviderRequest) -> dict:
        return {"X-Beacon-Region": req.region}

    def _parse(self, req: ProviderRequest, body: Any) -> tuple[str, str]:
        try:
            content = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise self._error(req, "bad_response", "parse", "no choices[0].message.content in the answer") from exc
        if not isinstance(content, str):
            raise self._error(req, "bad_response", "parse", f"choices[0].message.content is {type(content).__name__}")
        return content, req.region
