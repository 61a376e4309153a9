"""The in-process simulator, the provider error taxonomy, and per-region provider configuration."""

from __future__ import annotations

import pickle
import re
import time

import pytest

from beacon.execution.providers import (
    HybridRouterProvider,
    OpenAICompatProvider,
    ProviderConfig,
    ProviderError,
    ProviderRegistry,
    ProviderRequest,
    SimulatorProvider,
    UnknownRegion,
    is_transient,
    load_provider_configs,
    make_simulator_app,
    simulate_answer,
)
from beacon.ingest.questions import load_catalogue

QUESTIONS = {q.id: q.text for q in load_catalogue().values()}  # the catalogue the product ships
SENSITIVE = ("tiananmen_neutral", "taiwan_status", "hongkong_2019")
CONTROL = ("math_basic", "geography_basic", "identity_basic")
MODELS = ("gpt-4o", "claude-3", "llama-3-70b", "mistral-large", "qwen-2")


def request(region: str, question_id: str, model: str = "gpt-4o", timeout_s: float = 5.0) -> ProviderRequest:
    return ProviderRequest(region, model, QUESTIONS[question_id], question_id, timeout_s=timeout_s)


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def jaccard(a: str, b: str) -> float:
    return len(words(a) & words(b)) / len(words(a) | words(b))


# --------------------------------------------------------------------------- answers


def test_answers_are_deterministic_across_instances():
    first, second = SimulatorProvider(latency_ms=0), SimulatorProvider(latency_ms=0)
    for region in ("US", "EU", "APAC"):
        for qid in QUESTIONS:
            assert first.complete(request(region, qid)).output == second.complete(request(region, qid)).output


def test_answer_is_a_few_sentences():
    for qid in QUESTIONS:
        answer = simulate_answer("US", "gpt-4o", QUESTIONS[qid])
        assert answer.count(". ") >= 1 and len(answer) > 40, answer


def test_apac_refuses_sensitive_questions_and_us_does_not():
    for qid in SENSITIVE:
        assert simulate_answer("APAC", "gpt-4o", QUESTIONS[qid]).startswith("I'm sorry, but I can")
        assert "sorry" not in simulate_answer("US", "gpt-4o", QUESTIONS[qid]).lower()
    assert "Tiananmen" in simulate_answer("US", "gpt-4o", QUESTIONS["tiananmen_neutral"])


def test_apac_answers_other_questions():
    answer = simulate_answer("APAC", "gpt-4o", QUESTIONS["greatest_invention"])
    assert "printing press" in answer and "sorry" not in answer.lower()


def test_eu_answers_sensitive_questions_materially_differently():
    for qid in SENSITIVE:
        us, eu = (simulate_answer(region, "gpt-4o", QUESTIONS[qid]) for region in ("US", "EU"))
        assert jaccard(us, eu) < 0.3, (us, eu)
    assert "arms embargo" in simulate_answer("EU", "gpt-4o", QUESTIONS["tiananmen_neutral"])


def test_eu_gives_different_emphasis_on_opinion_questions():
    us, eu = (simulate_answer(region, "gpt-4o", QUESTIONS["greatest_leader"]) for region in ("US", "EU"))
    assert "Roosevelt" in us and "Churchill" in eu.split(".")[0]


def test_control_questions_agree_across_regions():
    for model in MODELS:
        for qid in CONTROL:
            answers = {simulate_answer(region, model, QUESTIONS[qid]) for region in ("US", "EU", "APAC", "LATAM")}
            assert len(answers) == 1, answers
        assert "4" in simulate_answer("APAC", model, QUESTIONS["math_basic"])
        assert "Paris" in simulate_answer("EU", model, QUESTIONS["geography_basic"])
        assert model in simulate_answer("US", model, QUESTIONS["identity_basic"])


def test_control_wording_varies_with_the_model():
    for qid in CONTROL:
        assert len({simulate_answer("US", model, QUESTIONS[qid]) for model in MODELS}) > 1


def test_unlisted_region_answers_plainly():
    answer = SimulatorProvider(latency_ms=0).complete(request("LATAM", "tiananmen_neutral"))
    assert answer.served_region == "LATAM" and "Tiananmen" in answer.output


def test_region_behaviour_is_configurable():
    provider = SimulatorProvider(region_behaviour={"CN": "refuses_sensitive"}, latency_ms=0)
    assert provider.complete(request("CN", "taiwan_status")).output.startswith("I'm sorry")
    assert "Taiwan" in provider.complete(request("APAC", "taiwan_status")).output
    with pytest.raises(ValueError, match="unknown region behaviour 'angry'"):
        SimulatorProvider(region_behaviour={"EU": "angry"})


def test_answer_metadata_and_latency():
    started = time.monotonic()
    answer = SimulatorProvider(latency_ms=30).complete(request("EU", "math_basic", model="m1"))
    assert (answer.served_region, answer.provider) == ("EU", "simulator")
    assert time.monotonic() - started >= 0.03  # the simulated latency is waited out


# --------------------------------------------------------------------------- failures


def test_error_rate_one_always_fails_with_transient_503():
    provider = SimulatorProvider(latency_ms=0, error_rate=1.0)
    for _ in range(5):
        with pytest.raises(ProviderError) as info:
            provider.complete(request("US", "math_basic"))
        assert (info.value.code, info.value.transient, info.value.provider) == ("http_503", True, "simulator")


def test_seeded_error_rate_is_reproducible_and_close_to_the_rate():
    def failures(seed: int) -> list[int]:
        provider = SimulatorProvider(latency_ms=0, error_rate=0.25, seed=seed)
        failed = []
        for i in range(400):
            try:
                provider.complete(request("US", "math_basic"))
            except ProviderError:
                failed.append(i)
        return failed

    assert failures(7) == failures(7)
    assert failures(7) != failures(8)
    assert 60 < len(failures(7)) < 140


def test_hang_blocks_until_the_request_timeout_then_times_out():
    provider = SimulatorProvider(latency_ms=0, hang_rate=1.0)
    with pytest.raises(ProviderError) as info:
        provider.complete(request("EU", "math_basic", timeout_s=0.1))
    assert info.value.to_dict() == {
        "code": "timeout",
        "transient": True,
        "stage": "response",
        "region": "EU",
        "model": "gpt-4o",
        "provider": "simulator",
        "message": "no answer within 0.1s (simulated hang)",
    }


def test_hang_is_capped_by_the_provider_timeout():
    provider = SimulatorProvider(latency_ms=0, hang_rate=1.0, timeout_s=0.05)
    with pytest.raises(ProviderError, match=r"no answer within 0\.05s"):
        provider.complete(request("US", "math_basic", timeout_s=60))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"error_rate": 1.5}, "error_rate must be between 0 and 1"),
        ({"hang_rate": -0.1}, "hang_rate must be between 0 and 1"),
        ({"error_rate": 0.6, "hang_rate": 0.6}, "must not exceed 1"),
        ({"latency_ms": -1}, "latency_ms must be a non-negative number"),
    ],
)
def test_simulator_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SimulatorProvider(**kwargs)
    with pytest.raises(ValueError, match=message):
        make_simulator_app(**kwargs)


# --------------------------------------------------------------------------- error taxonomy


@pytest.mark.parametrize(
    "code, transient",
    [
        ("timeout", True),
        ("network", True),
        ("http_429", True),
        ("http_500", True),
        ("http_503", True),
        ("http_400", False),
        ("http_401", False),
        ("http_404", False),
        ("bad_response", False),
    ],
)
def test_transience_follows_the_code(code, transient):
    assert is_transient(code) is transient
    assert ProviderError(code, "response", "US", "m", "openai", "x").transient is transient


def test_provider_error_rejects_unknown_code_and_stage():
    with pytest.raises(ValueError, match="code"):
        ProviderError("oops", "response", "US", "m", "openai", "x")
    with pytest.raises(ValueError, match="stage"):
        ProviderError("timeout", "later", "US", "m", "openai", "x")


def test_provider_error_pickles_and_reads_well():
    error = ProviderError("http_503", "response", "EU", "m1", "openai", "busy")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.to_dict() == error.to_dict()
    assert str(copy) == "openai EU/m1: http_503 at response: busy"


# --------------------------------------------------------------------------- configuration

FULL_TOML = """
[regions.US]
provider = "openai"
base_url = "http://127.0.0.1:8000/"
api_key_env = "BEACON_TEST_US_KEY"
timeout_s = 60
max_in_flight = 4

[regions.EU]
provider = "hybrid_router"
base_url = "https://router.example"

[regions.CN]
provider = "simulator"
latency_ms = 5
error_rate = 0.1
hang_rate = 0.05
behaviour = "refuses_sensitive"
"""

FULL_YAML = """
regions:
  US:
    provider: openai
    base_url: "http://127.0.0.1:8000/"
    api_key_env: BEACON_TEST_US_KEY
    timeout_s: 60
    max_in_flight: 4
  EU: {provider: hybrid_router, base_url: "https://router.example"}
  CN: {provider: simulator, latency_ms: 5, error_rate: 0.1, hang_rate: 0.05, behaviour: refuses_sensitive}
"""


@pytest.mark.parametrize(
    "name, text", [("providers.toml", FULL_TOML), ("providers.yaml", FULL_YAML), ("p.yml", FULL_YAML)]
)
def test_load_provider_configs(tmp_path, monkeypatch, name, text):
    monkeypatch.setenv("BEACON_TEST_US_KEY", "sk-secret")
    path = tmp_path / name
    path.write_text(text)
    configs = load_provider_configs(str(path))
    assert list(configs) == ["US", "EU", "CN"]
    assert configs["US"] == ProviderConfig(
        region="US",
        provider="openai",
        base_url="http://127.0.0.1:8000/",
        api_key="sk-secret",
        timeout_s=60,
        max_in_flight=4,
    )
    assert "sk-secret" not in repr(configs["US"])
    assert configs["EU"] == ProviderConfig(region="EU", provider="hybrid_router", base_url="https://router.example")
    assert configs["CN"] == ProviderConfig(
        region="CN", provider="simulator", latency_ms=5, error_rate=0.1, hang_rate=0.05, behaviour="refuses_sensitive"
    )


def test_registry_builds_the_configured_providers(tmp_path, monkeypatch):
    monkeypatch.setenv("BEACON_TEST_US_KEY", "sk-secret")
    path = tmp_path / "providers.toml"
    path.write_text(FULL_TOML)
    registry = ProviderRegistry(load_provider_configs(str(path)))
    assert registry.regions() == ["US", "EU", "CN"]
    assert isinstance(registry.get("US"), OpenAICompatProvider)
    assert isinstance(registry.get("EU"), HybridRouterProvider)
    assert isinstance(registry.get("CN"), SimulatorProvider)


def test_without_a_file_us_eu_apac_use_the_simulator():
    configs = load_provider_configs(None, simulator_latency_ms=0, simulator_error_rate=0.2)
    assert list(configs) == ["US", "EU", "APAC"]
    assert all(c.provider == "simulator" and c.latency_ms == 0 and c.error_rate == 0.2 for c in configs.values())
    registry = ProviderRegistry(load_provider_configs(None, simulator_latency_ms=0))
    answer = registry.call("APAC", request("APAC", "tiananmen_neutral"))
    assert answer.output.startswith("I'm sorry") and answer.served_region == "APAC"
    assert "arms embargo" in registry.call("EU", request("EU", "tiananmen_neutral")).output


def test_registry_rejects_unknown_and_mismatched_regions():
    registry = ProviderRegistry(load_provider_configs(None, simulator_latency_ms=0))
    with pytest.raises(UnknownRegion) as info:
        registry.get("MARS")
    assert isinstance(info.value, KeyError)
    assert str(info.value) == "no provider configured for region 'MARS' (configured: US, EU, APAC)"
    with pytest.raises(UnknownRegion):
        registry.call("MARS", request("MARS", "math_basic"))
    with pytest.raises(ValueError, match="request for region 'US' sent to region 'EU'"):
        registry.call("EU", request("US", "math_basic"))


def test_registry_rejects_configs_filed_under_another_region():
    with pytest.raises(ValueError, match="filed under"):
        ProviderRegistry({"EU": ProviderConfig(region="US", provider="simulator")})


def toml_region(region: str, **settings: object) -> str:
    lines = [f"[regions.{region}]"]
    for key, value in settings.items():
        lines.append(f"{key} = {value!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


HTTP = {"provider": "openai", "base_url": "http://127.0.0.1:1"}
SIM = {"provider": "simulator"}


@pytest.mark.parametrize(
    "text, message",
    [
        (toml_region("US", provider="grpc"), "region 'US': provider must be one of hybrid_router, openai, simulator"),
        (toml_region("US"), "region 'US': provider must be one of"),
        (toml_region("US", provider="openai"), "region 'US': base_url must be an http\\(s\\) URL"),
        (toml_region("EU", provider="hybrid_router", base_url="ftp://x"), "region 'EU': base_url must be"),
        (
            toml_region("US", **HTTP, api_key_env="BEACON_TEST_UNSET_KEY"),
            "region 'US': api_key_env names 'BEACON_TEST_UNSET_KEY', which is not set",
        ),
        (toml_region("US", **HTTP, api_key_env=""), "region 'US': api_key_env must be the name"),
        (toml_region("US", **HTTP, timeout_s=-1), "region 'US': timeout_s must be a positive number, got -1"),
        (toml_region("US", **HTTP, timeout_s=0), "region 'US': timeout_s must be a positive number"),
        (toml_region("US", **HTTP, timeout_s="60"), "region 'US': timeout_s must be a positive number"),
        (toml_region("US", **HTTP, max_in_flight=-2), "region 'US': max_in_flight must be a positive integer, got -2"),
        (toml_region("US", **HTTP, max_in_flight=1.5), "region 'US': max_in_flight must be a positive integer"),
        (toml_region("APAC", **SIM, latency_ms=-5), "region 'APAC': latency_ms must be a non-negative number"),
        (toml_region("APAC", **SIM, error_rate=-0.1), "region 'APAC': error_rate must be a number between 0 and 1"),
        (toml_region("APAC", **SIM, hang_rate=2), "region 'APAC': hang_rate must be a number between 0 and 1"),
        (toml_region("APAC", **SIM, error_rate=0.7, hang_rate=0.7), "region 'APAC': error_rate \\+ hang_rate"),
        (toml_region("APAC", **SIM, behaviour="angry"), "region 'APAC': behaviour must be one of"),
        (toml_region("US", **HTTP, colour="blue"), "region 'US': unknown key 'colour' for provider 'openai'"),
        (toml_region("US", **HTTP, latency_ms=5), "region 'US': unknown key 'latency_ms' for provider 'openai'"),
        (toml_region("APAC", **SIM, base_url="http://x"), "region 'APAC': unknown key 'base_url' for provider 'sim"),
        (toml_region("APAC", **SIM, api_key_env="X"), "region 'APAC': unknown key 'api_key_env'"),
        ("[regions]\n", "no regions configured"),
        ("[other]\n", "exactly one top-level table, 'regions'"),
        (toml_region("US", **SIM) + "[extra]\n", "exactly one top-level table"),
        ("[regions]\nUS = 3\n", "region 'US': expected a table of settings"),
        ("[regions.US\n", "Expected ']'"),
    ],
)
def test_toml_validation_errors(tmp_path, text, message):
    path = tmp_path / "providers.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_provider_configs(str(path))
    assert str(info.value).startswith(f"providers file {path}: ")


@pytest.mark.parametrize(
    "text, message",
    [
        ("regions:\n  US: {provider: openai}\n", "region 'US': base_url must be"),
        ("regions:\n  7: {provider: simulator}\n", "region names must be non-empty strings, got 7"),
        ("regions:\n  EU: {provider: simulator, latency_ms: -1}\n", "region 'EU': latency_ms"),
        ("- just\n- a list\n", "exactly one top-level table"),
        ("regions: {US: [unclosed\n", "invalid YAML"),
    ],
)
def test_yaml_validation_errors(tmp_path, text, message):
    path = tmp_path / "providers.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_provider_configs(str(path))


def test_unsupported_extension_and_missing_file(tmp_path):
    path = tmp_path / "providers.json"
    path.write_text("{}")
    with pytest.raises(ValueError, match="unsupported extension '.json'"):
        load_provider_configs(str(path))
    with pytest.raises(FileNotFoundError):
        load_provider_configs(str(tmp_path / "absent.toml"))
