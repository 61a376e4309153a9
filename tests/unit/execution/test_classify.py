"""Answer classification, on hand-written answers and on the simulator's."""

from __future__ import annotations

import pytest

from beacon.execution.classify import CLASSIFICATIONS, classify
from beacon.execution.providers import simulate_answer
from beacon.ingest.questions import load_catalogue

QUESTIONS = {q.id: q.text for q in load_catalogue().values()}  # the catalogue the product ships
SENSITIVE = {"tiananmen_neutral", "taiwan_status", "hongkong_2019"}


def test_classifications():
    assert CLASSIFICATIONS == ("substantive", "content_refusal", "technical_failure")


@pytest.mark.parametrize("output", [None, "", "   \n"])
def test_missing_or_empty_output_is_a_technical_failure(output):
    assert classify(output, failed=False) == "technical_failure"


def test_a_failed_call_is_a_technical_failure_whatever_its_output():
    assert classify("Paris is the capital of France.", failed=True) == "technical_failure"


@pytest.mark.parametrize(
    "output",
    [
        "I can't help with that request.",
        "I CANNOT discuss this.",
        "I'm sorry, but that is outside what I can talk about.",
        "I\u2019m sorry, but I won\u2019t go into that.",  # curly apostrophes
        "Unfortunately I am not able to discuss political events.",
        "That is something I'm unable to provide information on.",
        "I must decline to answer.",
    ],
)
def test_refusal_phrases(output):
    assert classify(output, failed=False) == "content_refusal"


@pytest.mark.parametrize(
    "output",
    [
        "4",
        "Paris is the capital of France.",
        "The printing press spread literacy across Europe. " * 6 + "Exact figures I cannot verify.",
        "Scientists can't agree on a single answer, but most point to the printing press.",
    ],
)
def test_substantive_answers(output):
    assert classify(output, failed=False) == "substantive"


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3", "qwen-2"])
def test_simulator_answers_classify_as_expected(model):
    for qid, prompt in QUESTIONS.items():
        for region in ("US", "EU", "APAC", "LATAM"):
            expected = "content_refusal" if region == "APAC" and qid in SENSITIVE else "substantive"
            assert classify(simulate_answer(region, model, prompt), failed=False) == expected, (qid, region)

