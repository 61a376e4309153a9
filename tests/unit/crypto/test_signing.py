"""Signatures: the Go runner's fixtures verify, any one-byte change fails, canonical form is Go's."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon.crypto.canonical import canonical_json, go_float, loads
from beacon.crypto.signing import KeyPair, sign_document, verify_document
from tests.support import fixtures_dir

FIXTURES = sorted((fixtures_dir() / "go-runner-signed").glob("*.signed.json"))
EXPECTED_FORMS = {"minimal": "current", "who-are-you": "current", "legacy-v0": "legacy"}


def load(path) -> dict:
    return json.loads(path.read_text())


def test_three_fixtures_exist():
    assert {p.name.split(".")[0] for p in FIXTURES} == set(EXPECTED_FORMS)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_go_runner_fixture_verifies(path):
    assert verify_document(load(path)) == EXPECTED_FORMS[path.name.split(".")[0]]


def _string_leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _string_leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _string_leaves(item, path + (index,))
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        yield path, value


def _set(doc, path, value):
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_one_byte_change_to_any_signed_field_fails(path):
    original = load(path)
    checked = 0
    for leaf_path, value in _string_leaves(original):
        if leaf_path[0] in ("signature", "public_key"):
            continue
        doc = load(path)
        if isinstance(value, str):
            changed = (value[:-1] + chr((ord(value[-1]) + 1) % 128)) if value else "x"
        else:
            changed = value + 1
        _set(doc, leaf_path, changed)
        assert verify_document(doc) is None, f"{leaf_path} changed and still verified"
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_one_byte_change_to_signature_fails(path):
    doc = load(path)
    raw = bytearray(__import__("base64").b64decode(doc["signature"]))
    raw[0] ^= 1
    doc["signature"] = __import__("base64").b64encode(bytes(raw)).decode()
    assert verify_document(doc) is None


def test_malformed_signature_is_a_clear_error():
    doc = load(FIXTURES[0])
    doc["signature"] = "###"
    with pytest.raises(ValueError, match="signature is not valid standard base64"):
        verify_document(doc)
    doc["signature"] = "AAAA"
    with pytest.raises(ValueError, match="64 bytes"):
        verify_document(doc)


def test_canonical_escapes_like_go():
    doc = {"b": "<a&b>\u2028\u2029", "a": "q\"\\\n\r\t\b\f\x01\x1f\x7f é 😀"}
    assert canonical_json(doc) == (
        '{"a":"q\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f é 😀",'
        '"b":"\\u003ca\\u0026b\\u003e\\u2028\\u2029"}'
    ).encode()


@pytest.mark.parametrize(
    "value, text",
    [(0.0, "0"), (1.0, "1"), (0.67, "0.67"), (1e-7, "1e-7"), (1.5e-7, "1.5e-7"), (1e-6, "0.000001"),
     (1e20, "100000000000000000000"), (1e21, "1e+21"), (123.456, "123.456"), (-2.5e-9, "-2.5e-9"),
     (300000000000, "300000000000")],
)
def test_numbers_as_go_prints_them(value, text):
    assert canonical_json(value).decode() == text


def test_without_id_form_verifies_and_the_old_empty_dropping_form_does_not():
    """The former "portal" form (empty values dropped recursively, Go canonical bytes) let anyone add
    zeros and empty fields to a signed spec without the key; it is no longer accepted."""
    key = KeyPair.generate()
    doc = {"id": "", "version": "1.0", "created_at": "", "metadata": {"nonce": "n", "tags": None, "zero": 0},
           "signature": "", "public_key": ""}
    dropped = {"version": "1.0", "metadata": {"nonce": "n"}, "signature": "", "public_key": ""}
    signature = key.signing_key.sign(canonical_json(dropped)).signature
    import base64

    submitted = dict(doc, id="assigned-later", created_at="2025-01-01T00:00:00Z",
                     signature=base64.b64encode(signature).decode(), public_key=key.public_key_b64)
    assert verify_document(submitted) is None
    without_id = {k: v for k, v in submitted.items() if k != "id"}
    signed = sign_document(without_id, key.signing_key)
    assert verify_document(dict(signed, id="added-after-signing")) == "without_id"


# ------------------------------------------------------------------ property tests

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False), st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_canonical_is_valid_json_with_sorted_keys_and_same_value(doc):
    encoded = canonical_json(doc)
    decoded = loads(encoded)
    assert list(decoded) == sorted(decoded)
    assert canonical_json(decoded) == encoded  # stable under a round trip
    outside_strings = re.sub(rb'"(?:\\.|[^"\\])*"', b'""', encoded)
    assert not re.search(rb"\s", outside_strings), "whitespace between tokens"
    for bad in (b"<", b">", b"&"):
        assert bad not in encoded


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_key_order_does_not_matter(doc):
    reversed_doc = dict(reversed(list(doc.items())))
    assert canonical_json(doc) == canonical_json(reversed_doc)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(value):
    assert float(go_float(value)) == value or (value == 0 and math.copysign(1, value) < 0)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=10).filter(lambda k: k not in ("signature", "public_key")), json_values, max_size=6))
def test_sign_verify_round_trip(doc):
    key = KeyPair.generate()
    signed = sign_document(doc, key.signing_key)
    assert verify_document(signed) == "current"
    # Unicode and escapes survive transport as JSON text.
    assert verify_document(loads(json.dumps(signed, ensure_ascii=False))) == "current"


@settings(max_examples=500)
@given(json_values)
def test_fast_encoder_equals_the_portable_one(value):
    from beacon.crypto.canonical import encode_portable

    assert canonical_json(value) == encode_portable(value)


@pytest.mark.parametrize("value", [1.0, -0.0, 1e-5, 1e17, 2.5e-7, "a\ud800b", {"k": [1.0, "<&>"]}, "\u2028\x7f\x00"])
def test_fast_encoder_edge_cases(value):
    from beacon.crypto.canonical import encode_portable

    assert canonical_json(value) == encode_portable(value)
