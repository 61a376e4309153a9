"""js_sorted_stringify gives the portal's bytes: node's own sort + JSON.stringify is the reference."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beacon.crypto.jsjson import is_array_index, js_number, js_sort_keys, js_sorted_stringify
from tests import jsclient
from tests.factories import mebibyte_spec

INF = float("inf")

SPECIAL_CHARS = [
    "\x00",
    "\x01",
    "\x08",
    "\t",
    "\n",
    "\x0b",
    "\x0c",
    "\r",
    "\x1f",
    "\x7f",
    '"',
    "\\",
    "/",
    "<",
    ">",
    "&",
    "'",
    "\u0080",
    "\u00e9",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\ud7ff",
    "\ue000",
    "\uf8ff",
    "\ufffd",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "\ud800",
    "\udbff",
    "\udc00",
    "\udfff",
    "\ud83d",
    "\ude00",  # surrogates: lone, or pairing up by chance
]
SPECIAL_KEYS = [
    "",
    "0",
    "7",
    "10",
    "01",
    "00",
    "-1",
    "-0",
    "1.5",
    "1e3",
    " 1",
    "+1",
    "4294967294",
    "4294967295",
    "9007199254740993",
    "__proto__",
    "constructor",
    "toJSON",
    "a",
    "A",
    "_",
    "\ue000",
    "\U0001f600",
    "\ud800",
    "\ud83d\ude00",
]
SPECIAL_NUMBERS = [
    0,
    -0.0,
    1,
    -1,
    0.1,
    0.5,
    100.0,
    1e20,
    1e21,
    1e-6,
    1e-7,
    1.5e-7,
    123.456,
    2**53,
    2**53 + 1,
    -(2**53) - 1,
    2**64,
    10**21,
    10**22 + 1,
    1.2345678901234568e20,
    9.999999999999999e20,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    10**400,
    -(10**400),
    INF,
    -INF,
    math.nan,
]

# Surrogate pairs spelt as two code points: JavaScript reads them as the one astral character.
SPLIT_PAIRS = ["\ud83d\ude00", "\ud800\udc00", "\udbff\udfff"]

chars = st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL_CHARS))
texts = st.one_of(
    st.text(chars, max_size=12),
    st.lists(st.sampled_from(SPECIAL_CHARS + SPLIT_PAIRS), max_size=6).map("".join),
)
keys = st.one_of(st.text(chars, max_size=5), st.sampled_from(SPECIAL_KEYS))
numbers = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),
    st.floats(min_value=-1e25, max_value=1e25),
    st.floats(min_value=-1e-5, max_value=1e-5),
    st.sampled_from(SPECIAL_NUMBERS),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


def _js_key(key: str) -> str:
    return key.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _distinct_in_js(mapping: dict) -> bool:
    """No two keys that JavaScript would read as the same string (a surrogate pair spelt two ways)."""
    return len({_js_key(key) for key in mapping}) == len(mapping)


def objects(children):
    return st.dictionaries(keys, children, max_size=6).filter(_distinct_in_js)


json_values = st.recursive(scalars, lambda children: st.lists(children, max_size=5) | objects(children), max_leaves=30)


@pytest.fixture(scope="module")
def js() -> jsclient.PortalJs:
    return jsclient.shared()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(batch=st.lists(json_values, min_size=1, max_size=8))
def test_random_values_match_node_byte_for_byte(batch):
    expected = jsclient.shared().stringify_many(batch)
    for value, node_bytes in zip(batch, expected, strict=True):
        assert js_sorted_stringify(value) == node_bytes, value


@settings(max_examples=100, deadline=None)
@given(metadata=objects(json_values), extra=objects(json_values))
def test_spec_shaped_values_match_node(metadata, extra):
    spec = {"version": "v1", "benchmark": {"name": "b", "input": {"hash": "sha256:0"}}, "metadata": metadata, **extra}
    assert js_sorted_stringify(spec) == jsclient.shared().stringify(spec)


@settings(max_examples=200, deadline=None)
@given(value=numbers)
def test_number_formatting_matches_node(value):
    assert js_number(value).encode() == jsclient.shared().stringify(value)


HAND_WRITTEN = [
    ({"b": 1, "a": [1, 2.5, None, True, False]}, b'{"a":[1,2.5,null,true,false],"b":1}'),
    (
        {"b": 0, "a": 0, "10": 0, "9": 0, "01": 0, "-1": 0, "4294967295": 0, "4294967294": 0, "0": 0},
        b'{"0":0,"9":0,"10":0,"4294967294":0,"-1":0,"01":0,"4294967295":0,"a":0,"b":0}',
    ),
    # UTF-16 order: the astral character's lead surrogate D83D sorts before U+E000.
    ({"\ue000": 1, "\U0001f600": 2, "z": 3}, '{"z":3,"\U0001f600":2,"\ue000":1}'.encode()),
    (
        [1e21, 1e-7, 1.2345678901234568e20, -0.0, 2**53 + 1, 0.000001, math.nan, INF, -INF, 5e-324, 100.0, -1.5e-7],
        b"[1e+21,1e-7,123456789012345680000,0,9007199254740992,0.000001,null,null,null,5e-324,100,-1.5e-7]",
    ),
    (
        [1.7976931348623157e308, 10**400, 2**64, 1e20, 0.1, 1e-6],
        b"[1.7976931348623157e+308,null,18446744073709552000,100000000000000000000,0.1,0.000001]",
    ),
    (
        "\x00\x08\t\n\x0b\x0c\r\x1f\"\\/<>&'\x7f\u2028\u00e9",
        '"\\u0000\\b\\t\\n\\u000b\\f\\r\\u001f\\"\\\\/<>&\'\x7f\u2028\u00e9"'.encode(),
    ),
    ("\ud800x\udfff", b'"\\ud800x\\udfff"'),
    ("\ud83d\ude00", '"\U0001f600"'.encode()),  # two surrogate code points = one JavaScript pair
    ("\ude00\ud83d", b'"\\ude00\\ud83d"'),  # wrong order: two lone surrogates
    ({"__proto__": {"a": 1}, "b": {"__proto__": 5, "c": 6}}, b'{"b":{"c":6}}'),
    ({"x": [], "y": {}, "": ""}, b'{"":"","x":[],"y":{}}'),
]


@pytest.mark.parametrize("value, expected", HAND_WRITTEN)
def test_hand_written_expectations(value, expected, js):
    assert js_sorted_stringify(value) == expected
    assert js.stringify(value) == expected  # and node agrees


def test_python_sort_would_be_wrong_here():
    keys = ["\ue000", "\U0001f600"]
    assert sorted(keys) == keys  # code-point order: U+E000 first
    assert js_sorted_stringify(dict.fromkeys(keys, 0)).startswith('{"\U0001f600"'.encode())


def test_array_index_keys():
    assert [
        k for k in ["0", "7", "10", "01", "-1", "1.5", "4294967294", "4294967295", "", "\u0661"] if is_array_index(k)
    ] == ["0", "7", "10", "4294967294"]


def test_tuples_and_subclasses_serialise_as_their_base():
    class Text(str):
        def __str__(self) -> str:
            return "not me"

    assert js_sorted_stringify((1, Text("t"), {Text("k"): 2.0})) == b'[1,"t",{"k":2}]'


@pytest.mark.parametrize("value", [{1: 2}, {None: 1}, b"bytes", {1, 2}, object(), [1j]])
def test_values_without_a_json_form_raise_type_error(value):
    with pytest.raises(TypeError):
        js_sorted_stringify(value)


def test_keys_that_are_one_javascript_string_raise():
    with pytest.raises(ValueError):
        js_sorted_stringify({"\U0001f600": 1, "\ud83d\ude00": 2})


def test_js_sort_keys_orders_like_the_bytes():
    value = {"b": {"10": 1, "9": 2, "__proto__": 3}, "a": [{"y": 1, "x": 2}], "\ud83d\ude00": 0}
    sorted_value = js_sort_keys(value)
    assert list(sorted_value) == ["a", "b", "\U0001f600"]
    assert list(sorted_value["b"]) == ["9", "10"]
    assert list(sorted_value["a"][0]) == ["x", "y"]
    assert json.dumps(sorted_value, separators=(",", ":"), ensure_ascii=False).encode() == js_sorted_stringify(value)


def test_a_mebibyte_spec_matches_node():
    """The largest body the API accepts, byte for byte (its speed is measured by bench.jsjson)."""
    spec = mebibyte_spec()
    signed = js_sorted_stringify(spec)
    assert len(signed) > 1_000_000
    assert signed == jsclient.shared().stringify(spec)
