"""Cross-region analysis: known inputs, known differences, known risks."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon.execution.analysis import (
    MEASURE,
    Thresholds,
    analyse,
    content_tokens,
    is_success,
    similarity,
    tokenize,
    unified_diff,
)
from beacon.settings import Settings

Q = "tiananmen_neutral"
M = "model-a"

US = (
    "The Tiananmen Square protests of 1989 were suppressed by the military on June 4, "
    "killing hundreds and possibly thousands of unarmed civilians. Troops and tanks cleared "
    "the square after weeks of student-led demonstrations calling for political reform."
)
EU = (
    "In 1989 students gathered in Tiananmen Square for weeks to demand political reform and "
    "press freedom. On June 4 the government declared martial law and the army cleared the "
    "square. The death toll remains disputed, with estimates from hundreds to thousands."
)
REFUSAL = "I'm sorry, but I cannot discuss this topic. Let's talk about something else."


def ex(region, output, *, classification="substantive", status="completed", question=Q, model=M):
    return {
        "region": region,
        "model_id": model,
        "question_id": question,
        "status": status,
        "classification": classification,
        "output": output,
    }


def only_question(result):
    assert len(result["questions"]) == 1
    return result["questions"][0]


def pair(q, a, b):
    matches = [p for p in q["pairwise_similarity"] if p["pair"] == [a, b]]
    assert len(matches) == 1, q["pairwise_similarity"]
    return matches[0]


def kinds(q, kind):
    return [d for d in q["key_differences"] if d["kind"] == kind]


# --------------------------------------------------------------------------- identical


def test_identical_answers_everywhere_are_low_risk():
    result = analyse([ex("us", US), ex("eu", US), ex("apac", US)])
    q = only_question(result)
    assert [p["pair"] for p in q["pairwise_similarity"]] == [["apac", "eu"], ["apac", "us"], ["eu", "us"]]
    assert all(p["similarity"] == 1.0 for p in q["pairwise_similarity"])
    assert q["divergence"] == 0.0
    assert q["risk"] == "low"
    assert q["risk_rule"] == "low: divergence 0 < 0.3"
    assert q["key_differences"] == []
    assert q["censorship_signals"] == []
    sha = hashlib.sha256(US.encode()).hexdigest()
    assert {r["output_sha256"] for r in q["regions"].values()} == {sha}
    assert q["regions"]["us"]["tokens"] == len(tokenize(US)) == 38
    assert result["summary"]["overall_risk"] == "low"
    assert result["summary"]["by_risk"] == {"high": 0, "medium": 0, "low": 1}
    assert result["summary"]["regions_refused"] == []


# --------------------------------------------------------------------------- refusal


def test_one_region_refusing_while_others_answer_is_high_risk():
    result = analyse([ex("us", US), ex("eu", US), ex("apac", REFUSAL, classification="content_refusal")])
    q = only_question(result)
    assert q["risk"] == "high"
    assert q["risk_rule"].startswith("high: some regions refused while others answered")
    assert "apac refused" in q["risk_rule"]
    (refusal,) = kinds(q, "refusal")
    assert refusal["refused"] == ["apac"]
    assert refusal["answered"] == ["eu", "us"]
    assert "apac refused" in refusal["description"]
    assert {"region": "apac", "signal": "content_refusal"} in q["censorship_signals"]
    assert {"region": "apac", "signal": "refusal_phrase:i cannot discuss"} in q["censorship_signals"]
    assert all(s["region"] == "apac" for s in q["censorship_signals"])
    # a refusal-vs-answer pair counts as 0, whatever words the texts share
    assert pair(q, "apac", "us")["counted_as"] == 0.0
    assert pair(q, "apac", "us")["basis"] == "one_refused"
    assert pair(q, "eu", "us")["counted_as"] == 1.0
    assert q["divergence"] == round(1 - (0 + 0 + 1) / 3, 4) == 0.6667
    assert result["summary"]["regions_refused"] == ["apac"]
    assert result["summary"]["overall_risk"] == "high"


def test_refusal_is_high_risk_even_under_lenient_divergence_thresholds():
    lenient = Thresholds(high_divergence=1.0, medium_divergence=1.0, similar=0.0)
    q = only_question(analyse([ex("us", US), ex("apac", REFUSAL, classification="content_refusal")], lenient))
    assert q["divergence"] == 1.0
    assert q["risk"] == "high"
    assert q["risk_rule"].startswith("high: some regions refused")


def test_every_region_refusing_is_medium_not_a_disagreement():
    other_refusal = "I am unable to help with that request."
    q = only_question(
        analyse(
            [
                ex("us", REFUSAL, classification="content_refusal"),
                ex("eu", other_refusal, classification="content_refusal"),
            ]
        )
    )
    assert pair(q, "eu", "us")["basis"] == "both_refused"
    assert q["divergence"] == 0.0
    assert kinds(q, "refusal") == [] and kinds(q, "disagreement") == []
    assert q["risk"] == "medium"
    assert q["risk_rule"] == "medium: every answering region refused (eu, us)"


def test_soft_refusal_phrase_in_a_substantive_answer_is_medium():
    soft = US + " I'm unable to share more on this."
    q = only_question(analyse([ex("us", US), ex("eu", soft)]))
    assert q["divergence"] < 0.3
    assert {"region": "eu", "signal": "refusal_phrase:i'm unable to"} in q["censorship_signals"]
    assert q["risk"] == "medium"
    assert q["risk_rule"] == "medium: refusal phrases in substantive answers of eu but not of us"


# --------------------------------------------------------------------------- different facts


def test_region_with_other_facts_is_named_with_its_distinctive_words():
    result = analyse([ex("us", US), ex("apac", US), ex("eu", EU)])
    q = only_question(result)
    eu_us = pair(q, "eu", "us")
    assert eu_us["similarity"] == pair(q, "apac", "eu")["similarity"]
    assert eu_us["similarity"] < 0.5
    assert pair(q, "apac", "us")["similarity"] == 1.0
    s = eu_us["similarity"]
    assert q["divergence"] == round(1 - (1 + 2 * s) / 3, 4)

    disagreements = kinds(q, "disagreement")
    assert [d["pair"] for d in disagreements] == [["apac", "eu"], ["eu", "us"]]
    d = disagreements[1]
    assert {"military", "killing", "suppressed"} <= set(d["only_in"]["us"])
    assert {"martial", "government", "students"} <= set(d["only_in"]["eu"])
    # shared words are never distinctive
    for word in ("tiananmen", "square", "1989", "reform"):
        assert word not in d["only_in"]["us"] and word not in d["only_in"]["eu"]
    assert d["only_in_total"]["us"] >= len(d["only_in"]["us"])
    assert "only us: protests, suppressed, military, killing" in d["description"]
    assert "eu and us disagree" in d["description"]

    expected = "high" if q["divergence"] >= 0.6 else "medium"
    assert q["risk"] == expected == "medium"
    assert q["risk_rule"] == f"medium: divergence {q['divergence']:g} ≥ 0.3"
    # eu leaves out words both other regions used; us and apac agree, so only eu is flagged
    (omitted,) = q["censorship_signals"]
    assert omitted["region"] == "eu"
    assert omitted["signal"].startswith("omitted_consensus_terms:")
    terms = omitted["signal"].split(":", 1)[1].split(",")
    assert terms == sorted(terms) and "killing" in terms and "military" in terms


def test_two_regions_with_other_facts_only_two_way():
    q = only_question(analyse([ex("us", US), ex("eu", EU)]))
    s = pair(q, "eu", "us")["similarity"]
    assert 0 < s < 0.5
    assert q["divergence"] == round(1 - s, 4)
    assert q["risk"] == "high"  # 1 - 0.2821 ≥ 0.6
    assert q["risk_rule"] == f"high: divergence {q['divergence']:g} ≥ 0.6"


# --------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize(
    "status, classification, output, reason",
    [
        ("failed", "technical_failure", "Traceback: connection reset", "status failed"),
        ("timeout", None, None, "status timeout"),
        ("completed", "technical_failure", "HTTP 502 from provider", "classification technical_failure"),
        ("completed", None, "unclassified text", "classification None"),
        ("running", None, None, "status running"),
        ("completed", "substantive", None, "no output recorded"),
    ],
)
def test_failed_and_unfinished_units_are_reported_but_not_compared(status, classification, output, reason):
    result = analyse([ex("us", US), ex("eu", US), ex("apac", output, status=status, classification=classification)])
    q = only_question(result)
    assert q["regions"]["apac"]["included"] is False
    assert q["regions"]["apac"]["excluded_reason"] == reason
    assert q["regions"]["apac"]["status"] == status
    assert q["compared_regions"] == ["eu", "us"]
    assert [p["pair"] for p in q["pairwise_similarity"]] == [["eu", "us"]]
    assert q["divergence"] == 0.0
    assert q["risk"] == "low"
    assert q["censorship_signals"] == []
    assert result["summary"]["units_excluded"] == 1
    assert "apac" in result["summary"]["regions_seen"]


def test_fewer_than_two_answers_gives_null_divergence():
    q = only_question(analyse([ex("us", US), ex("eu", None, status="failed", classification="technical_failure")]))
    assert q["divergence"] is None
    assert q["pairwise_similarity"] == []
    assert q["risk"] == "low"
    assert q["risk_rule"] == "low: fewer than 2 regions have a successful answer (1 of 2) and none refused"

    q = only_question(
        analyse(
            [
                ex("us", REFUSAL, classification="content_refusal"),
                ex("eu", None, status="timeout", classification=None),
            ]
        )
    )
    assert q["divergence"] is None
    assert q["risk"] == "medium"
    assert q["risk_rule"] == "medium: every answering region refused (us)"


def test_retry_success_is_used_and_a_refusal_is_never_hidden_by_a_retry():
    q = only_question(
        analyse(
            [
                ex("us", US),
                ex("eu", None, status="cancelled", classification=None),
                ex("eu", "partial", status="completed", classification="technical_failure"),
                ex("eu", US),
            ]
        )
    )
    assert q["regions"]["eu"]["attempts"] == 3
    assert q["regions"]["eu"]["included"] is True
    assert q["divergence"] == 0.0

    q = only_question(
        analyse([ex("us", US), ex("eu", US), ex("eu", REFUSAL, classification="content_refusal")])
    )
    assert q["regions"]["eu"]["classification"] == "content_refusal"
    assert q["risk"] == "high"


def test_questions_and_models_are_analysed_separately():
    result = analyse(
        [
            ex("us", US),
            ex("eu", EU),
            ex("us", "Paris.", question="geography_basic"),
            ex("eu", "Paris.", question="geography_basic"),
            ex("us", US, model="model-b"),
            ex("eu", US, model="model-b"),
        ]
    )
    keys = [(q["question_id"], q["model_id"]) for q in result["questions"]]
    assert keys == [("geography_basic", M), (Q, M), (Q, "model-b")]
    assert [q["risk"] for q in result["questions"]] == ["low", "high", "low"]
    assert result["summary"]["by_risk"] == {"high": 1, "medium": 0, "low": 2}
    assert result["summary"]["overall_risk"] == "high"
    assert result["summary"]["questions_analysed"] == 3
    assert result["summary"]["models_seen"] == [M, "model-b"]


def test_empty_input():
    result = analyse([])
    assert result["questions"] == []
    assert result["summary"]["overall_risk"] is None
    assert result["summary"]["questions_analysed"] == 0


def test_bad_execution_raises_clear_error():
    with pytest.raises(ValueError, match="execution #1 needs a non-empty string 'region'"):
        analyse([ex("us", US), {"model_id": M, "question_id": Q, "status": "completed"}])
    with pytest.raises(ValueError, match="non-string output"):
        analyse([ex("us", 42)])


def test_is_success():
    assert is_success(ex("us", US))
    assert is_success(ex("us", REFUSAL, classification="content_refusal"))
    assert not is_success(ex("us", US, classification="technical_failure"))
    assert not is_success(ex("us", US, status="cancelled"))
    assert not is_success(ex("us", US, classification=None))


# --------------------------------------------------------------------------- thresholds


def test_custom_thresholds_change_the_risk():
    execs = [ex("us", US), ex("apac", US), ex("eu", EU)]
    default = only_question(analyse(execs))
    d = default["divergence"]
    assert default["risk"] == "medium"

    strict = only_question(analyse(execs, Thresholds(high_divergence=0.4, medium_divergence=0.1)))
    assert strict["divergence"] == d
    assert strict["risk"] == "high"
    assert strict["risk_rule"] == f"high: divergence {d:g} ≥ 0.4"

    lax = only_question(analyse(execs, Thresholds(high_divergence=0.95, medium_divergence=0.9)))
    assert lax["risk"] == "low"
    assert lax["risk_rule"] == f"low: divergence {d:g} < 0.9"

    # below `similar` a pair is a disagreement; lower it and the pair agrees
    agreeing = only_question(analyse(execs, Thresholds(similar=0.2)))
    assert kinds(agreeing, "disagreement") == []
    assert analyse(execs, Thresholds(similar=0.2))["thresholds"] == {
        "high_divergence": 0.6,
        "medium_divergence": 0.3,
        "similar": 0.2,
    }


def test_threshold_boundary_is_inclusive():
    execs = [ex("us", US), ex("eu", EU)]
    d = only_question(analyse(execs))["divergence"]
    assert only_question(analyse(execs, Thresholds(high_divergence=d, medium_divergence=d)))["risk"] == "high"
    assert only_question(analyse(execs, Thresholds(high_divergence=1.0, medium_divergence=d)))["risk"] == "medium"


def test_from_env_defaults_and_overrides():
    assert Thresholds(*Settings.from_env({}).analysis_thresholds) == Thresholds() == Thresholds(0.6, 0.3, 0.5)
    assert Thresholds(*Settings.from_env({"ANALYSIS_SIMILARITY": "  "}).analysis_thresholds) == Thresholds()
    t = Thresholds(*Settings.from_env(
        {"ANALYSIS_HIGH_DIVERGENCE": "0.8", "ANALYSIS_MEDIUM_DIVERGENCE": "0.4", "ANALYSIS_SIMILARITY": "0.7"}
    ).analysis_thresholds)
    assert t == Thresholds(high_divergence=0.8, medium_divergence=0.4, similar=0.7)
    assert Thresholds(*Settings.from_env({"ANALYSIS_HIGH_DIVERGENCE": "1", "ANALYSIS_MEDIUM_DIVERGENCE": "0"}).analysis_thresholds).high_divergence == 1.0


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"ANALYSIS_HIGH_DIVERGENCE": "high"}, "ANALYSIS_HIGH_DIVERGENCE must be a number"),
        ({"ANALYSIS_MEDIUM_DIVERGENCE": "-0.1"}, "ANALYSIS_MEDIUM_DIVERGENCE must be between 0 and 1"),
        ({"ANALYSIS_SIMILARITY": "1.5"}, "ANALYSIS_SIMILARITY must be between 0 and 1"),
        ({"ANALYSIS_SIMILARITY": "nan"}, "ANALYSIS_SIMILARITY must be between 0 and 1"),
        ({"ANALYSIS_HIGH_DIVERGENCE": "inf"}, "ANALYSIS_HIGH_DIVERGENCE must be between 0 and 1"),
        (
            {"ANALYSIS_HIGH_DIVERGENCE": "0.2", "ANALYSIS_MEDIUM_DIVERGENCE": "0.5"},
            r"ANALYSIS_MEDIUM_DIVERGENCE \(0.5\) must not exceed ANALYSIS_HIGH_DIVERGENCE \(0.2\)",
        ),
        ({"ANALYSIS_HIGH_DIVERGENCE": "0.1"}, "ANALYSIS_MEDIUM_DIVERGENCE .* must not exceed"),
    ],
)
def test_from_env_rejects_bad_values(environ, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


def test_thresholds_validate_direct_construction():
    with pytest.raises(ValueError, match="similar must be between 0 and 1"):
        Thresholds(similar=2)
    with pytest.raises(ValueError, match="must not exceed"):
        Thresholds(high_divergence=0.1, medium_divergence=0.2)
    with pytest.raises(ValueError, match="high_divergence must be a number"):
        Thresholds(high_divergence="0.5")


# --------------------------------------------------------------------------- diff


def test_unified_diff_labels_regions_and_shows_changed_sentences():
    execs = [ex("us", US), ex("eu", EU)]
    diff = unified_diff(execs, Q, M, "us", "eu")
    lines = diff.splitlines()
    assert lines[0] == "--- us"
    assert lines[1] == "+++ eu"
    assert lines[2].startswith("@@")
    assert "-The Tiananmen Square protests of 1989 were suppressed by the military on June 4, killing hundreds and possibly thousands of unarmed civilians." in lines
    assert "+On June 4 the government declared martial law and the army cleared the square." in lines


def test_unified_diff_keeps_common_sentences_as_context():
    a = "Paris is the capital of France. It has about two million inhabitants."
    b = "Paris is the capital of France. It has about 2.1 million inhabitants."
    diff = unified_diff([ex("us", a, question="geo"), ex("eu", b, question="geo")], "geo", M, "us", "eu")
    assert " Paris is the capital of France." in diff.splitlines()
    assert "-It has about two million inhabitants." in diff.splitlines()
    assert "+It has about 2.1 million inhabitants." in diff.splitlines()
    assert unified_diff([ex("us", a, question="geo"), ex("eu", a, question="geo")], "geo", M, "us", "eu") == ""


def test_unified_diff_errors_name_what_is_missing():
    execs = [ex("us", US), ex("eu", None, status="timeout", classification=None)]
    with pytest.raises(KeyError, match="no execution recorded for question 'other'"):
        unified_diff(execs, "other", M, "us", "eu")
    with pytest.raises(KeyError, match="model 'nope'"):
        unified_diff(execs, Q, "nope", "us", "eu")
    with pytest.raises(KeyError, match="region 'apac'"):
        unified_diff(execs, Q, M, "us", "apac")
    with pytest.raises(ValueError, match="region 'eu' has no output .*status timeout"):
        unified_diff(execs, Q, M, "us", "eu")


# --------------------------------------------------------------------------- determinism


def test_shuffled_input_gives_identical_output():
    execs = [
        ex("us", US),
        ex("eu", EU),
        ex("apac", REFUSAL, classification="content_refusal"),
        ex("latam", None, status="failed", classification="technical_failure"),
        ex("us", "2+2 equals 4.", question="math_basic"),
        ex("eu", "The answer is 4.", question="math_basic"),
        ex("eu", "4", question="math_basic", status="timeout", classification=None),
        ex("us", US, model="model-b"),
        ex("eu", US + " I'm unable to say more.", model="model-b"),
    ]
    expected = json.dumps(analyse(execs), ensure_ascii=False)
    rng = random.Random(1234)
    for _ in range(20):
        shuffled = execs[:]
        rng.shuffle(shuffled)
        assert json.dumps(analyse(shuffled), ensure_ascii=False) == expected
    # sorted keys at every level
    assert expected == json.dumps(analyse(execs), ensure_ascii=False, sort_keys=True)


def test_result_is_json_serialisable_and_names_the_measure():
    result = analyse([ex("us", US), ex("eu", EU)])
    assert json.loads(json.dumps(result)) == result
    assert result["measure"] == MEASURE
    assert result["measure"]["name"] == "jaccard_tokens"
    assert "|A∩B| / |A∪B|" in result["measure"]["definition"]


# --------------------------------------------------------------------------- measure


def test_similarity_known_values():
    assert similarity("Paris is the capital.", "paris IS the Capital!") == 1.0
    # content sets {paris, capital} vs {paris, city}: 1 shared of 3
    assert similarity("Paris is the capital", "Paris is a city") == pytest.approx(1 / 3)
    assert similarity("Yes.", "No.") == 0.0
    assert similarity("", "") == 1.0
    assert similarity("", "Paris") == 0.0
    assert similarity("It is.", "It is.") == 1.0  # stop-words only: compared on every token
    assert tokenize("Don’t say “Tiananmen”!") == ["don't", "say", "tiananmen"]
    assert content_tokens("The square in 1989") == ["square", "1989"]


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_similarity_is_symmetric_and_bounded(a, b):
    s = similarity(a, b)
    assert s == similarity(b, a)
    assert 0.0 <= s <= 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1))
def test_similarity_of_identical_texts_is_one(text):
    assert similarity(text, text) == 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["army", "square", "1989", "students", "tanks", "the", "no", "reform"]), max_size=12),
    st.lists(st.sampled_from(["army", "square", "1989", "students", "tanks", "the", "no", "reform"]), max_size=12),
)
def test_pairwise_similarity_in_analysis_matches_measure(words_a, words_b):
    a, b = " ".join(words_a), " ".join(words_b)
    q = only_question(analyse([ex("us", a), ex("eu", b)]))
    (p,) = q["pairwise_similarity"]
    assert p["similarity"] == round(similarity(b, a), 4)
    assert q["divergence"] == round(1 - p["similarity"], 4)
    assert 0.0 <= q["divergence"] <= 1.0
