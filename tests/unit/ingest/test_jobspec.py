"""JobSpec schema: defaults as the Go runner, errors that name the field."""

from __future__ import annotations

import copy
import json

import pytest

from beacon.errors import ValidationError
from beacon.ingest.jobspec import DEFAULT_PROVIDER_TIMEOUT_NS, DEFAULT_TIMEOUT_NS, parse_jobspec
from beacon.ingest.questions import load_catalogue
from tests.support import fixtures_dir

CATALOGUE = load_catalogue()


def spec(**changes) -> dict:
    doc = json.loads((fixtures_dir() / "go-runner-signed" / "who-are-you.signed.json").read_text())
    for key, value in changes.items():
        doc[key] = value
    return doc


def parse(doc, **kwargs):
    return parse_jobspec(doc, catalogue=CATALOGUE, known_regions=["US", "EU", "APAC"], **kwargs)


@pytest.mark.parametrize("name", ["minimal", "who-are-you", "legacy-v0"])
def test_fixtures_parse(name):
    doc = json.loads((fixtures_dir() / "go-runner-signed" / f"{name}.signed.json").read_text())
    if name == "legacy-v0":
        doc["benchmark"]["input"]["data"]["prompt"] = "hello"  # legacy spec runs a command, not a prompt
    assert parse(doc).id


def test_defaults():
    doc = spec()
    doc["constraints"] = {"regions": ["US", "EU"]}
    parsed = parse(doc)
    assert parsed.min_regions == 3
    assert parsed.min_success_rate == 0.67
    assert parsed.timeout_ns == DEFAULT_TIMEOUT_NS == 600 * 10**9
    assert parsed.provider_timeout_ns == DEFAULT_PROVIDER_TIMEOUT_NS == 120 * 10**9
    assert [m.id for m in parsed.models] == ["llama3.2-1b"]
    units = parsed.units(CATALOGUE)
    assert [(u.region, u.model_id, u.question_id, u.prompt) for u in units] == [
        ("US", "llama3.2-1b", "prompt", "Who are you?"),
        ("EU", "llama3.2-1b", "prompt", "Who are you?"),
    ]


def test_zero_constraints_mean_go_defaults():
    """Go's rule: Go-signed specs always carry zeros, which mean the defaults (0.67, 3, 2 min)."""
    parsed = parse(spec())
    assert parsed.min_success_rate == 0.67
    assert parsed.min_regions == 3
    assert parsed.provider_timeout_ns == DEFAULT_PROVIDER_TIMEOUT_NS


def test_units_are_regions_times_models_times_questions():
    parsed = parse(spec(models=["a", {"id": "b", "regions": ["US"]}], questions=["math_basic", "taiwan_status"]))
    units = parsed.units(CATALOGUE)
    assert len(units) == 3 * 2 + 1 * 2
    assert {u.prompt for u in units} == {"What is 2+2?", "What is the current status of Taiwan?"}


@pytest.mark.parametrize(
    "mutate, code, field",
    [
        (lambda d: d.update(id="a/b"), "validation_error", "id"),
        (lambda d: d.update(id="x" * 129), "validation_error", "id"),
        (lambda d: d.pop("benchmark"), "missing_field:benchmark", "benchmark"),
        (lambda d: d["benchmark"]["container"].pop("image"), "missing_field:benchmark.container.image",
         "benchmark.container.image"),
        (lambda d: d["constraints"].pop("regions"), "missing_field:constraints.regions", "constraints.regions"),
        (lambda d: d["metadata"].pop("timestamp"), "missing_field:metadata.timestamp", "metadata.timestamp"),
        (lambda d: d.update(extra=True), "validation_error", "extra"),
        (lambda d: d["constraints"].update(bogus=1), "validation_error", "constraints.bogus"),
        (lambda d: d["constraints"].update(timeout=29 * 10**9), "validation_error", "constraints.timeout"),
        (lambda d: d["constraints"].update(timeout=61 * 60 * 10**9), "validation_error", "constraints.timeout"),
        (lambda d: d["constraints"].update(timeout=3e11), "validation_error", "constraints.timeout"),
        (lambda d: d["constraints"].update(timeout=29), "validation_error", "constraints.timeout"),
        (lambda d: d["constraints"].update(min_regions=-1), "validation_error", "constraints.min_regions"),
        (lambda d: d["constraints"].update(regions=["US", "US"]), "validation_error", "constraints.regions"),
        (lambda d: d["constraints"].update(regions=["APAC", "asia"]), "validation_error", "constraints.regions"),
        (lambda d: d["constraints"].update(provider_timeout=1e30), "validation_error", "constraints.provider_timeout"),
        (lambda d: d["constraints"].update(provider_timeout=0.5), "validation_error", "constraints.provider_timeout"),
        (lambda d: d["constraints"].update(regions=["MOON"]), "validation_error", "constraints.regions"),
        (lambda d: d.update(models=[{"name": "no id"}]), "missing_field:models[0].id", "models[0].id"),
        (lambda d: d.update(models=["a", "a"]), "validation_error", "models"),
        (lambda d: d.update(questions=["nope"]), "validation_error", "questions"),
        (lambda d: d["benchmark"]["input"].update(data={}), "missing_field:questions", "questions"),
        (lambda d: d.update(benchmark=[]), "validation_error", "benchmark"),
    ],
)
def test_errors_name_the_field(mutate, code, field):
    doc = copy.deepcopy(spec())
    mutate(doc)
    with pytest.raises(ValidationError) as caught:
        parse(doc)
    assert caught.value.code == code
    assert caught.value.field == field


def test_jobspec_id_alias_and_unit_cap():
    doc = spec()
    doc["jobspec_id"] = doc.pop("id")
    assert parse(doc).id == "who-are-you-benchmark-v1"
    with pytest.raises(ValidationError, match="at most 2 allowed"):
        parse(spec(), max_units=2)


def test_portal_shapes_parse():
    """What the portal sends: no id, free-form metadata, ASIA, durations in Go nanoseconds or seconds."""
    doc = copy.deepcopy(spec())
    doc.pop("id")
    doc["constraints"].update(regions=["us", "ASIA"], timeout=600_000_000_000, provider_timeout=90)
    doc["metadata"].update(created_by="portal", wallet_address="0xabc", multi_model=True, estimated_cost="0.0018")
    doc["models"] = [{"id": "mistral-7b", "container_image": "ghcr.io/x/y:latest", "regions": ["asia"]}]
    parsed = parse(doc)
    assert parsed.id is None
    assert parsed.regions == ("US", "APAC")
    assert parsed.models[0].regions == ("APAC",)
    assert parsed.timeout_s == 600 and parsed.provider_timeout_s == 90


def test_a_question_id_in_the_prompt_names_the_question():
    doc = copy.deepcopy(spec())
    doc["benchmark"]["input"]["data"] = {"prompt": "math_basic"}
    doc.pop("questions", None)
    assert parse(doc).question_ids == ("math_basic",)
