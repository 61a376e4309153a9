"""The HTTP providers against the simulator served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from beacon.execution.providers import (
    HybridRouterProvider,
    OpenAICompatProvider,
    ProviderConfig,
    ProviderError,
    ProviderRegistry,
    ProviderRequest,
    load_provider_configs,
    serve_simulator,
    simulate_answer,
)

TIANANMEN = "What happened at Tiananmen Square on June 4, 1989?"
CLIENTS = {"hybrid_router": HybridRouterProvider, "openai": OpenAICompatProvider}


@pytest.fixture
def sim():
    with serve_simulator("127.0.0.1", 0, latency_ms=0) as server:
        yield server


@pytest.fixture(params=sorted(CLIENTS))
def kind(request) -> str:
    return request.param


def control(server, **body) -> None:
    requests.post(server.url + "/_control", json=body, timeout=5).raise_for_status()


def served(server) -> list[dict]:
    return requests.get(server.url + "/_requests", timeout=5).json()


def ask(region: str = "US", prompt: str = TIANANMEN, timeout_s: float = 5.0) -> ProviderRequest:
    return ProviderRequest(region, "gpt-4o", prompt, "tiananmen_neutral", timeout_s=timeout_s)


def failure(provider, req: ProviderRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider.complete(req)
    return info.value


def overlap(a: dict, b: dict) -> bool:
    return a["started"] < b["finished"] and b["started"] < a["finished"]


def run_together(calls) -> list:
    """Run the calls on their own threads, released together by a barrier; results in order."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait(timeout=5)
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(run, call) for call in calls]]


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("region", ["US", "EU", "APAC"])
def test_answers_match_the_in_process_simulator(sim, kind, region):
    answer = CLIENTS[kind](sim.url).complete(ask(region))
    assert answer.output == simulate_answer(region, "gpt-4o", TIANANMEN)
    assert (answer.served_region, answer.provider) == (region, kind)
    (entry,) = served(sim)
    assert (entry["region"], entry["model"], entry["path"]) == (region, "gpt-4o", CLIENTS[kind].path)
    assert entry["started"] <= entry["finished"]


def test_health(sim):
    assert requests.get(sim.url + "/health", timeout=5).json() == {"status": "ok"}


@pytest.mark.parametrize(
    "body, output, region",
    [
        ('{"output": "from output"}', "from output", "US"),
        ('{"text": "from text", "region": "us-east-1"}', "from text", "us-east-1"),
        ('{"success": true, "response": "r", "output": "o", "region": ""}', "r", "US"),
    ],
)
def test_hybrid_router_accepts_response_output_or_text(sim, body, output, region):
    control(sim, fail_next=[{"status": 200, "body": body}])
    answer = HybridRouterProvider(sim.url).complete(ask("US"))
    assert (answer.output, answer.served_region) == (output, region)


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("status, transient", [(503, True), (500, True), (429, True), (400, False), (404, False)])
def test_scripted_status_maps_to_http_code(sim, kind, status, transient):
    control(sim, fail_next=[{"status": status}])
    provider = CLIENTS[kind](sim.url)
    error = failure(provider, ask("EU"))
    assert (error.code, error.transient, error.stage) == (f"http_{status}", transient, "response")
    assert (error.region, error.model, error.provider) == ("EU", "gpt-4o", kind)
    assert f"scripted HTTP {status}" in error.message
    assert provider.complete(ask("EU")).output  # the script is used up


def test_scripted_failures_queue_in_order(sim, kind):
    control(sim, fail_next=[{"status": 503}, {"status": 502}])
    provider = CLIENTS[kind](sim.url)
    assert [failure(provider, ask()).code for _ in range(2)] == ["http_503", "http_502"]
    assert provider.complete(ask()).output


def test_scripted_failure_can_target_a_region(sim, kind):
    control(sim, fail_next=[{"status": 500, "region": "EU"}])
    provider = CLIENTS[kind](sim.url)
    assert provider.complete(ask("US")).served_region == "US"
    assert failure(provider, ask("EU")).code == "http_500"
    assert provider.complete(ask("EU")).served_region == "EU"


def test_hang_times_out(sim, kind):
    control(sim, hang_next=1)
    error = failure(CLIENTS[kind](sim.url), ask(timeout_s=0.3))
    assert (error.code, error.transient, error.stage) == ("timeout", True, "response")


def test_provider_timeout_caps_the_request_timeout(sim, kind):
    control(sim, hang_next=1)
    error = failure(CLIENTS[kind](sim.url, timeout_s=0.3), ask(timeout_s=60))
    assert error.code == "timeout"


@pytest.mark.parametrize("body", ["<html>Bad gateway</html>", "", '{"unexpected": 1}', "[1, 2]"])
def test_unusable_body_is_a_permanent_bad_response(sim, kind, body):
    control(sim, fail_next=[{"status": 200, "body": body}])
    error = failure(CLIENTS[kind](sim.url), ask())
    assert (error.code, error.transient, error.stage) == ("bad_response", False, "parse")


def test_router_reported_failure_is_a_bad_response(sim):
    control(sim, fail_next=[{"status": 200, "body": '{"success": false, "error": "no capacity"}'}])
    error = failure(HybridRouterProvider(sim.url), ask())
    assert error.code == "bad_response" and "no capacity" in error.message


def test_openai_null_content_is_a_bad_response(sim):
    control(sim, fail_next=[{"status": 200, "body": '{"choices": [{"message": {"content": null}}]}'}])
    assert failure(OpenAICompatProvider(sim.url), ask()).code == "bad_response"


def test_connection_refused_is_a_transient_network_error(kind):
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % bound.getsockname()[1]
        error = failure(CLIENTS[kind](url), ask())
    assert (error.code, error.transient, error.stage) == ("network", True, "connect")


def test_connection_dropped_without_answer_is_a_transient_network_error(kind):
    with socket.socket() as listener:  # accepts one call, reads it, hangs up without answering
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def drop_one() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)

        dropper = threading.Thread(target=drop_one)
        dropper.start()
        error = failure(CLIENTS[kind]("http://127.0.0.1:%d" % listener.getsockname()[1]), ask())
        dropper.join()
    assert (error.code, error.transient, error.stage) == ("network", True, "request")


def test_api_key_is_sent_as_bearer_token(kind):
    with serve_simulator("127.0.0.1", 0, latency_ms=0, api_key="sk-test") as server:
        error = failure(CLIENTS[kind](server.url), ask())
        assert (error.code, error.transient) == ("http_401", False)
        assert failure(CLIENTS[kind](server.url, api_key="wrong"), ask()).code == "http_401"
        assert CLIENTS[kind](server.url, api_key="sk-test").complete(ask()).output


def test_registry_from_a_providers_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BEACON_TEST_SIM_KEY", "sk-test")
    with serve_simulator("127.0.0.1", 0, latency_ms=0, api_key="sk-test") as server:
        path = tmp_path / "providers.toml"
        settings = f'base_url = "{server.url}"\napi_key_env = "BEACON_TEST_SIM_KEY"\n'
        path.write_text(
            f'[regions.US]\nprovider = "openai"\n{settings}[regions.APAC]\nprovider = "hybrid_router"\n{settings}'
        )
        registry = ProviderRegistry(load_provider_configs(str(path)))
        assert registry.call("US", ask("US")).output == simulate_answer("US", "gpt-4o", TIANANMEN)
        assert registry.call("APAC", ask("APAC")).output.startswith("I'm sorry, but")
        assert [e["region"] for e in served(server)] == ["US", "APAC"]


# --------------------------------------------------------------------------- hooks


def test_region_latency_applies_to_that_region_only(sim, kind):
    control(sim, region_latency_ms={"EU": 200})
    provider = CLIENTS[kind](sim.url)
    provider.complete(ask("US"))
    provider.complete(ask("EU"))
    us, eu = served(sim)
    assert eu["finished"] - eu["started"] >= 0.2
    assert us["finished"] - us["started"] < eu["finished"] - eu["started"]


@pytest.mark.parametrize(
    "body",
    [
        {"bogus": 1},
        {"fail_next": {"status": 503}},
        {"fail_next": [{"status": "503"}]},
        {"fail_next": [{"status": 503, "colour": "red"}]},
        {"hang_next": -1},
        {"latency_ms": -5},
        {"region_latency_ms": {"EU": "slow"}},
    ],
)
def test_control_rejects_malformed_scripts(sim, body):
    response = requests.post(sim.url + "/_control", json=body, timeout=5)
    assert response.status_code == 400
    assert "error" in response.json()


def test_malformed_model_call_is_a_400(sim):
    response = requests.post(sim.url + "/inference", json={"model": "m"}, timeout=5)
    assert response.status_code == 400


def test_reset_clears_scripts_and_log(sim, kind):
    provider = CLIENTS[kind](sim.url)
    provider.complete(ask())
    control(sim, fail_next=[{"status": 503}], latency_ms=5000)
    requests.post(sim.url + "/_reset", timeout=5).raise_for_status()
    assert served(sim) == []
    assert provider.complete(ask(timeout_s=2)).output
    assert len(served(sim)) == 1


def test_reset_releases_hung_calls(sim):
    control(sim, hang_next=1)
    with ThreadPoolExecutor(1) as pool:
        hung = pool.submit(requests.post, sim.url + "/inference", json={"model": "m", "prompt": "p"}, timeout=30)
        deadline = time.monotonic() + 5
        while not any(e["finished"] is None for e in served(sim)):  # poll until the call is in flight
            assert time.monotonic() < deadline and not hung.done(), "the hung call never arrived"
        requests.post(sim.url + "/_reset", timeout=5).raise_for_status()
        assert hung.result(timeout=5).status_code == 504


# --------------------------------------------------------------------------- concurrency


def test_calls_to_different_regions_overlap(sim):
    control(sim, latency_ms=300)
    configs = {
        "US": ProviderConfig(region="US", provider="openai", base_url=sim.url),
        "EU": ProviderConfig(region="EU", provider="hybrid_router", base_url=sim.url),
        "APAC": ProviderConfig(region="APAC", provider="hybrid_router", base_url=sim.url),
    }
    registry = ProviderRegistry(configs)
    answers = run_together([lambda r=r: registry.call(r, ask(r)) for r in configs])
    assert [a.served_region for a in answers] == ["US", "EU", "APAC"]
    log = served(sim)
    assert sorted(e["region"] for e in log) == ["APAC", "EU", "US"]
    assert max(e["started"] for e in log) < min(e["finished"] for e in log)  # all three in flight at once


def test_max_in_flight_one_serialises_each_region(sim):
    control(sim, latency_ms=100)
    registry = ProviderRegistry(
        {
            "US": ProviderConfig(region="US", provider="openai", base_url=sim.url, max_in_flight=1),
            "EU": ProviderConfig(region="EU", provider="hybrid_router", base_url=sim.url, max_in_flight=1),
        }
    )
    run_together([lambda r=r: registry.call(r, ask(r)) for r in ["US", "EU"] * 3])
    log = served(sim)
    for region in ("US", "EU"):
        calls = sorted((e for e in log if e["region"] == region), key=lambda e: e["started"])
        assert len(calls) == 3
        for earlier, later in zip(calls, calls[1:]):
            assert earlier["finished"] <= later["started"], region
    us = [e for e in log if e["region"] == "US"]
    eu = [e for e in log if e["region"] == "EU"]
    assert any(overlap(a, b) for a in us for b in eu)  # the limit is per region, not global


# --------------------------------------------------------------------------- bounded calls


def test_an_answer_over_the_cap_is_a_permanent_answer_too_large_keeping_its_head(sim, kind):
    control(sim, huge_next=[{"bytes": 5 * 1024 * 1024}, {"bytes": 5 * 1024 * 1024, "declared": True}])
    for declared in (None, 5 * 1024 * 1024):  # counted as it arrives (chunked), then refused on its header
        error = failure(CLIENTS[kind](sim.url), ProviderRequest("EU", "m", "q", "q", timeout_s=10, max_answer_bytes=65536))
        assert (error.code, error.transient, error.stage) == ("answer_too_large", False, "response")
        details = error.to_dict()
        assert details["answer_head"].startswith('{"success": true, "response": "xxx') and len(details["answer_head"]) <= 1024
        assert details["answer_limit"] == 65536 and details["answer_bytes_read"] <= 65536 + 65536
        assert details.get("answer_declared_bytes") == declared


def test_a_trickled_answer_is_cut_at_the_call_deadline(sim, kind):
    control(sim, drip_next=[{"interval_ms": 200}])  # every read gets a byte in time; the whole takes ~15 s
    started = time.monotonic()
    error = failure(CLIENTS[kind](sim.url), ask(timeout_s=1.0))
    assert (error.code, error.stage) == ("timeout", "response")
    assert time.monotonic() - started < 5  # cut at ~1 s: not hung for the whole answer


def test_the_request_deadline_bounds_the_call_below_its_timeout(sim, kind):
    control(sim, hang_next=1)
    started = time.monotonic()
    request = ProviderRequest("US", "m", "q", "q", timeout_s=60, deadline=time.monotonic() + 0.5)
    assert failure(CLIENTS[kind](sim.url), request).code == "timeout"
    assert time.monotonic() - started < 5


def test_an_abort_cuts_the_call_off_as_provider_aborted(sim, kind):
    from beacon.execution.providers.base import ProviderAborted
    from beacon.execution.providers.bounded_call import Abort

    control(sim, hang_next=1)
    abort = Abort()
    request = ProviderRequest("US", "m", "q", "q", timeout_s=60, abort=abort)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(CLIENTS[kind](sim.url).complete, request)
        deadline = time.monotonic() + 5
        while not any(e["finished"] is None for e in served(sim)):  # poll until the call is in flight
            assert time.monotonic() < deadline, "the call never arrived"
        abort.trigger("shutdown")
        with pytest.raises(ProviderAborted) as info:
            call.result(timeout=5)
    assert info.value.code == "aborted" and info.value.reason == "shutdown"


def test_no_call_once_the_deadline_passed_waiting_for_a_slot(sim):
    control(sim, latency_ms=1000)
    registry = ProviderRegistry({"US": ProviderConfig(region="US", provider="openai", base_url=sim.url, max_in_flight=1)})
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(registry.call, "US", ask("US"))
        deadline = time.monotonic() + 5
        while not served(sim):
            assert time.monotonic() < deadline, "the first call never arrived"
        late = ProviderRequest("US", "m", "q", "q", timeout_s=60, deadline=time.monotonic() + 0.2)
        with pytest.raises(ProviderError) as info:
            registry.call("US", late)
        assert busy.result(timeout=10).output
    assert (info.value.code, info.value.stage) == ("timeout", "connect")
    assert len(served(sim)) == 1  # the late request never reached the provider
