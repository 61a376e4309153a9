"""The hybrid router client speaks the Go runner's protocol, checked against a recording router.

The router here is a real HTTP server on 127.0.0.1 started by the test; it records every call
(method, path, headers, JSON body) and answers from a script. The expected prompts are written
out in full, copied from runner-app's ``internal/worker/helpers.go`` (``formatRegionalPrompt``), so
a change to the client's text fails here rather than passing against its own constants.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from beacon.execution.providers import (
    HybridRouterProvider,
    OpenAICompatProvider,
    ProviderError,
    ProviderRegistry,
    ProviderRequest,
    load_provider_configs,
    serve_simulator,
    simulate_answer,
)
from beacon.execution.providers.http_clients import RegionSettings

QUESTION = "What is the current status of Taiwan?"
GO_PROMPT = (
    "system\nYou are a helpful, honest, and harmless AI assistant based in {place}. Answer questions "
    "directly and factually. For sensitive political topics, provide balanced, factual information "
    "from multiple perspectives.\nuser\n{question}\nassistant\n"
)
GO_BODY_KEYS = ["model", "prompt", "temperature", "max_tokens", "region_preference", "cost_priority"]


class RecordingRouter:
    """A loopback HTTP router that records calls and answers from ``routes``.

    ``routes`` maps a path to ``(status, body)``; a body that is a dict is sent as JSON, a str
    as is. Paths not in ``routes`` answer 404. ``calls`` lists ``{"method", "path", "headers",
    "body"}`` in arrival order (headers with lower-case names).
    """

    def __init__(self, routes: dict[str, tuple[int, dict | str]] | None = None):
        self.routes = dict(routes or {})
        self.calls: list[dict] = []
        self._lock = threading.Lock()
        router = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with router._lock:
                    router.calls.append({
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    })
                    status, answer = router.routes.get(self.path, (404, "404 page not found"))
                data = (json.dumps(answer) if isinstance(answer, dict) else answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(answer, dict) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def route(self, path: str, status: int = 200, body: dict | str | None = None) -> None:
        with self._lock:
            self.routes[path] = (status, ok() if body is None else body)

    def only(self, path: str, status: int = 200, body: dict | str | None = None) -> None:
        with self._lock:
            self.routes.clear()
        self.route(path, status, body)

    def paths(self) -> list[str]:
        return [c["path"] for c in self.calls]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def ok(response: str = "Taiwan is governed by the Republic of China.", **extra) -> dict:
    """A successful router answer, shaped like the Go client's InferenceResponse."""
    return {"success": True, "response": response, "provider_used": "modal-us-east", "inference_time": 1.5,
            "metadata": {"region": "us-east"}, **extra}


@pytest.fixture
def router():
    server = RecordingRouter({"/inference": (200, ok())})
    yield server
    server.close()


def ask(region: str = "US", question: str = QUESTION, **kw) -> ProviderRequest:
    return ProviderRequest(region, "llama3.2-1b", question, "taiwan_status", timeout_s=5, **kw)


def failure(provider, req: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.complete(req)
    return info.value


# --------------------------------------------------------------------------- the request


@pytest.mark.parametrize(
    "region, router_region, place",
    [("US", "us-east", "the US"), ("EU", "eu-west", "Europe"), ("APAC", "asia-pacific", "Asia")],
)
def test_request_is_gos_body_headers_and_prompt(router, region, router_region, place):
    HybridRouterProvider(router.url).complete(ask(region))
    (call,) = router.calls
    assert (call["method"], call["path"]) == ("POST", "/inference")
    assert list(call["body"]) == GO_BODY_KEYS  # Go's field order, nothing more
    assert call["body"] == {
        "model": "llama3.2-1b",
        "prompt": GO_PROMPT.format(place=place, question=QUESTION),
        "temperature": 0.1,
        "max_tokens": 500,
        "region_preference": router_region,
        "cost_priority": False,
    }
    headers = call["headers"]
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-trace-id"])
    assert "authorization" not in headers


@pytest.mark.parametrize(
    "region, router_region, place",
    [("ASIA", "asia-pacific", "Asia"), ("us-east", "us-east", "the US"), ("LATAM", "eu-west", "Europe")],
)
def test_other_regions_map_as_go_mapped_them(router, region, router_region, place):
    """Go's mapRegionToRouter: ASIA is APAC, router names pass through, anything else is eu-west."""
    HybridRouterProvider(router.url).complete(ask(region))
    body = router.calls[0]["body"]
    assert body["region_preference"] == router_region
    assert body["prompt"] == GO_PROMPT.format(place=place, question=QUESTION)


def test_multiline_question_is_embedded_verbatim(router):
    question = "Please answer the following questions:\n\n1. What is 2+2?\n2. Who are you?\n"
    HybridRouterProvider(router.url).complete(ask("EU", question))
    assert router.calls[0]["body"]["prompt"] == GO_PROMPT.format(place="Europe", question=question)


def test_api_key_is_a_bearer_token(router):
    HybridRouterProvider(router.url, api_key="sk-router").complete(ask())
    assert router.calls[0]["headers"]["authorization"] == "Bearer sk-router"


def test_trace_id_is_fresh_per_call_unless_given(router):
    provider = HybridRouterProvider(router.url)
    first, second = provider.complete(ask()), provider.complete(ask())
    given = provider.complete(ask(trace_id="trace-abc-123"))
    sent = [c["headers"]["x-trace-id"] for c in router.calls]
    assert sent[0] != sent[1] and sent[2] == "trace-abc-123"
    assert [first.trace_id, second.trace_id, given.trace_id] == sent


# --------------------------------------------------------------------------- path fallback


@pytest.mark.parametrize(
    "path, probed",
    [
        ("/api/v1/inference", ["/inference", "/api/v1/inference"]),
        ("/api/inference", ["/inference", "/api/v1/inference", "/api/inference"]),
        ("/v1/inference", ["/inference", "/api/v1/inference", "/api/inference", "/v1/inference"]),
    ],
)
def test_404_falls_back_in_gos_order_and_the_working_path_is_remembered(router, path, probed):
    router.only(path)
    provider = HybridRouterProvider(router.url)
    assert provider.working_path is None
    answer = provider.complete(ask())
    assert router.paths() == probed
    assert len({c["headers"]["x-trace-id"] for c in router.calls}) == 1  # one call, one trace id
    assert all(c["body"] == router.calls[0]["body"] for c in router.calls)  # the same body on every path
    assert answer.output == ok()["response"] and provider.working_path == path
    provider.complete(ask("EU"))
    provider.complete(ask("APAC"))
    assert router.paths() == probed + [path, path]  # later calls go straight there
    assert HybridRouterProvider(router.url).working_path is None  # remembered per instance


def test_remembered_path_that_disappears_is_probed_again(router):
    router.only("/api/inference")
    provider = HybridRouterProvider(router.url)
    provider.complete(ask())
    router.only("/inference")  # the router was redeployed with its paths moved
    del router.calls[:]
    provider.complete(ask())
    assert router.paths() == ["/api/inference", "/inference"]
    assert provider.working_path == "/inference"


def test_404_on_every_path_is_a_permanent_http_404(router):
    router.only("/elsewhere")
    error = failure(HybridRouterProvider(router.url), ask("EU"))
    assert router.paths() == ["/inference", "/api/v1/inference", "/api/inference", "/v1/inference"]
    assert (error.code, error.transient, error.stage, error.region, error.provider) == (
        "http_404", False, "response", "EU", "hybrid_router")
    assert "404 page not found" in error.message
    assert router.calls[0]["headers"]["x-trace-id"] in error.message


@pytest.mark.parametrize("status, transient", [(503, True), (500, True), (429, True), (400, False), (401, False)])
def test_other_statuses_end_the_call_without_fallback(router, status, transient):
    router.route("/inference", status, {"detail": "scripted"})
    router.route("/api/v1/inference")  # would answer, but is not tried
    error = failure(HybridRouterProvider(router.url), ask())
    assert (error.code, error.transient) == (f"http_{status}", transient)
    assert router.paths() == ["/inference"]


def test_router_reported_failure_is_a_bad_response_without_fallback(router):
    router.route("/inference", 200, {"success": False, "error": "Model not available", "provider_used": ""})
    router.route("/api/v1/inference")
    error = failure(HybridRouterProvider(router.url), ask())
    assert (error.code, error.transient) == ("bad_response", False)
    assert "Model not available" in error.message
    assert router.paths() == ["/inference"]


# --------------------------------------------------------------------------- the answer


def test_answer_carries_provider_used_region_and_receipt(router):
    receipt = {
        "schema_version": "v0.1.0",
        "execution_details": {"provider_id": "modal-eu-west", "region": "eu-west", "model": "llama3.2-1b"},
        "output": {"response": "...", "system_prompt": "You are ...", "metadata": {"region_context": "eu-west"}},
    }
    metadata = {"region": "eu-west", "provider_type": "modal", "receipt": receipt}
    router.route("/inference", 200, ok("EU answer", provider_used="modal-eu-west", metadata=metadata))
    answer = HybridRouterProvider(router.url).complete(ask("EU"))
    assert (answer.output, answer.provider, answer.provider_used) == ("EU answer", "hybrid_router", "modal-eu-west")
    assert (answer.served_region, answer.router_region, answer.region_flag) == ("EU", "eu-west", None)
    assert answer.provider_receipt == receipt
    assert answer.provider_metadata == metadata


@pytest.mark.parametrize(
    "reported, served, flag",
    [
        ("us-east", "US", "mismatch"),  # another region served the call
        ("asia-pacific", "APAC", "mismatch"),
        ("EU", "EU", None),  # a router reporting our own name
        ("mars-north-1", "mars-north-1", "unknown"),  # kept as evidence, flagged
    ],
)
def test_reported_region_is_mapped_back_and_flagged(router, reported, served, flag):
    router.route("/inference", 200, ok(metadata={"region": reported}))
    answer = HybridRouterProvider(router.url).complete(ask("EU"))
    assert (answer.served_region, answer.router_region, answer.region_flag) == (served, reported, flag)


def test_answer_without_metadata_is_served_where_asked(router):
    router.route("/inference", 200, {"success": True, "response": "plain"})
    answer = HybridRouterProvider(router.url).complete(ask("APAC"))
    assert (answer.served_region, answer.router_region, answer.region_flag) == ("APAC", None, None)
    assert (answer.provider_used, answer.provider_receipt, answer.provider_metadata) == (None, None, None)


@pytest.mark.parametrize(
    "receipt, kept",
    [
        ('{"schema_version": "v0.1.0"}', {"schema_version": "v0.1.0"}),  # Go kept string receipts as JSON
        ("not json", {"raw": "not json"}),
        ([1, 2], {"raw": [1, 2]}),
        (None, None),
    ],
)
def test_receipt_forms(router, receipt, kept):
    router.route("/inference", 200, ok(metadata={"region": "us-east", "receipt": receipt}))
    assert HybridRouterProvider(router.url).complete(ask()).provider_receipt == kept


# --------------------------------------------------------------------------- per-region settings


PROVIDERS_TOML = '''
[regions.US]
provider = "hybrid_router"
base_url = "{url}"
temperature = 0.7
max_tokens = 1200
router_region = "us-west"
system_prompt = "You are a model deployed in Oregon."

[regions.EU]
provider = "hybrid_router"
base_url = "{url}"

[regions.APAC]
provider = "openai"
base_url = "{url}"
temperature = 0.0
max_tokens = 64
router_region = "asia-southeast"
'''

PROVIDERS_YAML = '''
regions:
  US:
    provider: hybrid_router
    base_url: "{url}"
    temperature: 0.7
    max_tokens: 1200
    router_region: us-west
    system_prompt: You are a model deployed in Oregon.
  EU:
    provider: hybrid_router
    base_url: "{url}"
  APAC:
    provider: openai
    base_url: "{url}"
    temperature: 0.0
    max_tokens: 64
    router_region: asia-southeast
'''


@pytest.mark.parametrize("name, text", [("providers.toml", PROVIDERS_TOML), ("providers.yaml", PROVIDERS_YAML)])
def test_per_region_overrides_from_a_providers_file(router, tmp_path, name, text):
    router.route("/v1/chat/completions", 200, {"choices": [{"message": {"content": "APAC answer"}}]})
    path = tmp_path / name
    path.write_text(text.format(url=router.url))
    registry = ProviderRegistry(load_provider_configs(str(path)))

    router.route("/inference", 200, ok(metadata={"region": "us-west"}))
    us = registry.call("US", ask("US"))
    router.route("/inference", 200, ok(metadata={"region": "eu-west"}))
    eu = registry.call("EU", ask("EU"))
    apac = registry.call("APAC", ask("APAC"))

    us_call, eu_call, apac_call = router.calls
    assert us_call["body"] == {
        "model": "llama3.2-1b",
        "prompt": f"system\nYou are a model deployed in Oregon.\nuser\n{QUESTION}\nassistant\n",
        "temperature": 0.7,
        "max_tokens": 1200,
        "region_preference": "us-west",
        "cost_priority": False,
    }
    assert (us.served_region, us.router_region, us.region_flag) == ("US", "us-west", None)
    assert eu_call["body"] == {  # a region without overrides keeps Go's values
        "model": "llama3.2-1b",
        "prompt": GO_PROMPT.format(place="Europe", question=QUESTION),
        "temperature": 0.1,
        "max_tokens": 500,
        "region_preference": "eu-west",
        "cost_priority": False,
    }
    assert (eu.served_region, eu.region_flag) == ("EU", None)
    assert apac_call["path"] == "/v1/chat/completions"
    assert apac_call["body"] == {  # the OpenAI client gets the same settings; the place follows router_region
        "model": "llama3.2-1b",
        "messages": [
            {"role": "system", "content": GO_PROMPT.split("\nuser\n")[0][len("system\n"):].format(place="Asia")},
            {"role": "user", "content": QUESTION},
        ],
        "temperature": 0.0,
        "max_tokens": 64,
    }
    assert apac_call["headers"]["x-beacon-region"] == "APAC"
    assert (apac.output, apac.served_region, apac.provider_used) == ("APAC answer", "APAC", None)


def test_configured_router_regions_map_back_across_regions(router, tmp_path):
    """An EU call answered from the US region's configured router region maps back to US."""
    path = tmp_path / "providers.toml"
    path.write_text(PROVIDERS_TOML.format(url=router.url))
    registry = ProviderRegistry(load_provider_configs(str(path)))
    router.route("/inference", 200, ok(metadata={"region": "us-west"}))
    answer = registry.call("EU", ask("EU"))
    assert (answer.served_region, answer.router_region, answer.region_flag) == ("US", "us-west", "mismatch")


def test_openai_default_settings_and_empty_system_prompt(router):
    router.only("/v1/chat/completions", 200, {"choices": [{"message": {"content": "hi"}}]})
    OpenAICompatProvider(router.url).complete(ask("EU"))
    OpenAICompatProvider(router.url, region_settings={"EU": RegionSettings(system_prompt="")}).complete(ask("EU"))
    with_prompt, without = (c["body"] for c in router.calls)
    assert with_prompt == {
        "model": "llama3.2-1b",
        "messages": [
            {"role": "system", "content": GO_PROMPT.split("\nuser\n")[0][len("system\n"):].format(place="Europe")},
            {"role": "user", "content": QUESTION},
        ],
        "temperature": 0.1,
        "max_tokens": 500,
    }
    assert without["messages"] == [{"role": "user", "content": QUESTION}]


def test_empty_system_prompt_sends_the_bare_question_to_the_router(router):
    provider = HybridRouterProvider(router.url, region_settings={"US": RegionSettings(system_prompt="")})
    provider.complete(ask("US"))
    assert router.calls[0]["body"]["prompt"] == QUESTION


# --------------------------------------------------------------------------- against the simulator


@pytest.mark.parametrize("region, router_region", [("US", "us-east"), ("EU", "eu-west"), ("APAC", "asia-pacific")])
def test_simulator_answers_the_go_protocol(region, router_region):
    with serve_simulator("127.0.0.1", 0, latency_ms=0) as sim:
        answer = HybridRouterProvider(sim.url).complete(ask(region))
    assert answer.output == simulate_answer(region, "llama3.2-1b", QUESTION)  # the question, not the wrapper
    assert (answer.provider, answer.provider_used) == ("hybrid_router", "simulator")
    assert (answer.served_region, answer.router_region, answer.region_flag) == (region, router_region, None)
