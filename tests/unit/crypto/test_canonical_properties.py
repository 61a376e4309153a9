"""Property tests of both canonical forms (hypothesis): the Go runner's (beacon.crypto.canonical) and
the portal's JSON.stringify of sorted keys (beacon.crypto.jsjson). Each must read back as the value
it wrote, be a fixed point of itself, and keep its form's own escaping and key order, for any value.
(Byte-for-byte agreement with Go and Node on random values lives in test_signing and test_jsjson.)"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from beacon.crypto.canonical import canonical_json, loads
from beacon.crypto.jsjson import is_array_index, js_sorted_stringify

keys = st.text(max_size=8)
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**53), max_value=2**53),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)), max_leaves=25)
CONTROL = re.compile(r"[\x00-\x1f]")


def as_doubles(value):
    """The value as Go and JavaScript see it: every number a double (a float beyond 2**53 is written in
    full digits, which Python reads back as an int of the same double value)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    return {key: as_doubles(item) for key, item in value.items()}


def objects_in(value):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from objects_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from objects_in(item)


@settings(max_examples=400)
@given(value=values)
def test_go_form_reads_back_and_is_a_fixed_point(value):
    data = canonical_json(value)
    assert as_doubles(loads(data)) == as_doubles(json.loads(data)) == as_doubles(value)
    assert canonical_json(loads(data)) == data


@settings(max_examples=400)
@given(value=values)
def test_go_form_escapes_as_go_and_keeps_other_text_as_utf8(value):
    text = canonical_json(value).decode("utf-8")
    assert not set(text) & {"<", ">", "&", "\u2028", "\u2029"}, "Go escapes these as \\u003c … \\u2029"
    assert not CONTROL.search(text), "control characters are always escaped"
    assert " " not in text.replace('" "', "") or any(" " in s for s in _strings(value)), "no whitespace added"
    for string in _strings(value):
        plain = "".join(ch for ch in string if ch not in '<>&"\\\u2028\u2029' and ord(ch) >= 0x20 and ord(ch) < 0x7f
                        or ord(ch) > 0x7f and ch not in "\u2028\u2029")
        if plain == string and string:
            assert json.dumps(string, ensure_ascii=False) in text, "other text is written as itself (UTF-8)"


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


@settings(max_examples=400)
@given(value=values)
def test_go_form_sorts_every_objects_keys_by_their_bytes(value):
    for obj in objects_in(json.loads(canonical_json(value), object_pairs_hook=dict)):
        written = list(obj)
        assert written == sorted(written, key=lambda k: k.encode("utf-8"))


@settings(max_examples=400)
@given(value=values)
def test_portal_form_reads_back_and_is_a_fixed_point(value):
    data = js_sorted_stringify(value)
    assert as_doubles(json.loads(data)) == as_doubles(value)
    assert js_sorted_stringify(json.loads(data)) == data


@settings(max_examples=400)
@given(value=values)
def test_portal_form_orders_keys_as_javascript_does(value):
    """Array-index keys first in numeric order (JavaScript's own property order), then the others in
    UTF-16 code-unit order (Array.prototype.sort on strings)."""
    for obj in objects_in(json.loads(js_sorted_stringify(value), object_pairs_hook=dict)):
        written = list(obj)
        indices = [k for k in written if is_array_index(k)]
        others = [k for k in written if not is_array_index(k)]
        assert written == indices + others
        assert indices == sorted(indices, key=int)
        assert others == sorted(others, key=lambda k: k.encode("utf-16-be"))


@settings(max_examples=300)
@given(value=values)
def test_the_two_forms_agree_on_the_value(value):
    assert as_doubles(json.loads(canonical_json(value))) == as_doubles(json.loads(js_sorted_stringify(value)))
