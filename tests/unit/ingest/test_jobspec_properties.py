"""Property tests of JobSpec parsing (hypothesis): whatever JSON arrives, the parser answers a JobSpec
or a ValidationError naming a field, never another exception; what it accepts obeys the caps and
the unit arithmetic, and parsing is a pure function of the document."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beacon.errors import ValidationError
from beacon.ingest.jobspec import parse_jobspec
from beacon.ingest.questions import load_catalogue
from tests.support import fixtures_dir

CATALOGUE = load_catalogue()
REGIONS = ["US", "EU", "APAC"]
QUESTION_IDS = sorted(CATALOGUE)
BASE = json.loads((fixtures_dir() / "go-runner-signed" / "who-are-you.signed.json").read_text())

scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=15)
paths = st.sampled_from([
    ("id",), ("version",), ("benchmark",), ("benchmark", "name"), ("benchmark", "input"),
    ("benchmark", "input", "data"), ("benchmark", "container"), ("constraints",), ("constraints", "regions"),
    ("constraints", "min_regions"), ("constraints", "min_success_rate"), ("constraints", "timeout"),
    ("constraints", "provider_timeout"), ("metadata",), ("metadata", "nonce"), ("metadata", "timestamp"),
    ("questions",), ("models",), ("runs",), ("wallet_auth",), ("created_at",), ("signature",), ("public_key",),
    ("jobspec_id",), ("surprise",),
])


def parse(doc, **kwargs):
    return parse_jobspec(doc, catalogue=CATALOGUE, known_regions=REGIONS, **kwargs)


def outcome(doc):
    try:
        return parse(doc)
    except ValidationError as error:
        assert error.code == "validation_error" or error.code.startswith("missing_field:"), error.code
        if isinstance(doc, dict):
            assert isinstance(error.details["field"], str), error.details  # "" is a key too
        else:
            assert str(error) == "the JobSpec must be a JSON object" and error.details is None
        return error


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc=values)
def test_any_json_value_is_a_jobspec_or_a_validation_error(doc):
    outcome(doc)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, value=values)
def test_one_field_of_a_valid_spec_replaced_by_anything(path, value):
    doc = copy.deepcopy(BASE)
    node = doc
    for part in path[:-1]:
        node = node[part] if isinstance(node.get(part), dict) else node.setdefault(part, {})
    node[path[-1]] = value
    found = outcome(doc)
    if isinstance(found, ValidationError) and path == ("surprise",):
        assert found.details["field"] == "surprise"


@settings(max_examples=200)
@given(regions=st.lists(st.sampled_from(REGIONS + ["asia", "eu", "Us"]), min_size=1, max_size=6),
       models=st.lists(st.text(alphabet="abcdefghij.-0123456789", min_size=1, max_size=12), max_size=5),
       questions=st.lists(st.sampled_from(QUESTION_IDS), max_size=5) if QUESTION_IDS else st.just([]),
       max_units=st.integers(min_value=1, max_value=40))
def test_units_are_the_product_and_respect_the_cap(regions, models, questions, max_units):
    doc = copy.deepcopy(BASE)
    doc["constraints"]["regions"] = regions
    doc["models"] = models
    doc["questions"] = questions
    try:
        found = parse(doc, max_units=max_units)
    except ValidationError:
        return  # duplicates, caps: refused with a field, which outcome() checks elsewhere
    expected = len(found.regions) * len(found.models) * max(1, len(found.question_ids))
    assert len(found.units(CATALOGUE)) == found.unit_count() == expected <= max_units
    assert set(found.regions) <= set(REGIONS), "region names are canonical (ASIA is APAC)"


@settings(max_examples=200)
@given(path=paths, value=values)
def test_parsing_is_pure(path, value):
    doc = copy.deepcopy(BASE)
    doc[path[0]] = value
    before = copy.deepcopy(doc)
    first, second = outcome(doc), outcome(doc)
    assert doc == before, "the parser never changes the document it reads"
    assert type(first) is type(second)
    if not isinstance(first, ValidationError):
        assert first.units(CATALOGUE) == second.units(CATALOGUE) and first.regions == second.regions


@settings(max_examples=200)
@given(seconds=st.integers(min_value=30, max_value=3600))
def test_timeout_in_seconds_and_in_nanoseconds_mean_the_same(seconds):
    as_seconds, as_ns = copy.deepcopy(BASE), copy.deepcopy(BASE)
    as_seconds["constraints"]["timeout"] = seconds
    as_ns["constraints"]["timeout"] = seconds * 10**9
    as_seconds["constraints"]["provider_timeout"] = as_ns["constraints"]["provider_timeout"] = 1  # 1 s
    assert parse(as_seconds).timeout_ns == parse(as_ns).timeout_ns == seconds * 10**9
