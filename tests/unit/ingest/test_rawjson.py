"""beacon.ingest.rawjson: hostile bodies become 400s with the right code, reason and path."""

from __future__ import annotations

import json

import pytest

from beacon.crypto.canonical import canonical_json, loads
from beacon.errors import Invalid
from beacon.ingest.rawjson import MAX_DEPTH, nesting_depth, parse_body, parse_optional_body


def refused(raw: bytes | str) -> Invalid:
    with pytest.raises(Invalid) as caught:
        parse_body(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    return caught.value


@pytest.mark.parametrize("text, depth", [
    ("1", 0), ("[]", 1), ("{}", 1), ('[{"a": [1]}]', 3), ('["[[[[", "]]]"]', 1), (r'["\"[[[", 1]', 1),
    (r'{"a\\": [[1]]}', 3), ('[[["unterminated [[[[[', 3), ("]]]]", 0),
])
def test_nesting_depth_skips_strings(text, depth):
    assert nesting_depth(text) == depth


def test_depth_limit_is_inclusive():
    assert parse_body(("[" * MAX_DEPTH + "]" * MAX_DEPTH).encode()) is not None
    error = refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert (error.code, error.details) == ("invalid_json", {"reason": "depth"})
    assert refused("[" * 100_000).details == {"reason": "depth"}  # unclosed: refused before parsing


def test_wide_documents_are_not_deep():
    assert len(parse_body(json.dumps([[i] for i in range(10_000)]).encode())) == 10_000


@pytest.mark.parametrize("raw, path, key", [
    ('{"a": 1, "a": 2}', "a", "a"),
    ('{"m": {"x": 1, "y": 2, "x": 3}}', "m.x", "x"),
    ('{"models": [{"id": "a"}, {"id": "b", "id": "c"}]}', "models[1].id", "id"),
    ('[{"k": 1, "k": 1}]', "[0].k", "k"),
])
def test_duplicate_keys_name_their_path(raw, path, key):
    error = refused(raw)
    assert error.code == "duplicate_key"
    assert error.details == {"field": path, "key": key}


@pytest.mark.parametrize("raw, path", [
    (r'{"a": "x\u0000"}', "a"),
    (r'{"a\u0000": 1}', "a\x00"),
    (r'{"q": ["ok", "\ud800"]}', "q[1]"),
    (r'{"q": {"r": "\udfff!"}}', "q.r"),
    (r'"\ude00\ud83d"', "$"),
])
def test_nul_and_lone_surrogates_are_validation_errors(raw, path):
    error = refused(raw)
    assert (error.code, error.details) == ("validation_error", {"field": path})


def test_escaped_backslash_before_u0000_is_text():
    assert parse_body(rb'{"a": "\\u0000"}') == {"a": "\\u0000"}
    assert parse_body(rb'"\ud83d\ude00"') == "\U0001F600"


@pytest.mark.parametrize("raw, reason", [
    (b'{"a": "\xff"}', "encoding"),
    (b'"\xed\xa0\x80"', "encoding"),  # a surrogate encoded in UTF-8
    (b"\xef\xbb\xbf{}", "syntax"),  # a byte order mark
    (b"", "syntax"),
    (b"{} []", "syntax"),
    (b'{"a": NaN}', "number"),  # as canonical.loads refuses it: not a JSON number
    (b"[1e400]", "number"),
    (b"[-1e400]", "number"),
    (b"[" + b"9" * 5000 + b"]", "number"),
])
def test_invalid_json_reasons(raw, reason):
    error = refused(raw)
    assert (error.code, error.details) == ("invalid_json", {"reason": reason})


def test_numbers_decode_as_the_canonical_decoder_does():
    raw = b'{"z": -0, "f": 1.5, "i": 12345678901234567890, "e": 1e300}'
    assert canonical_json(parse_body(raw)) == canonical_json(loads(raw))
    assert repr(parse_body(b"-0")) == "-0.0"


def test_optional_body():
    assert parse_optional_body(b"") is None and parse_optional_body(b" \n") is None
    assert parse_optional_body(b'{"reason": "r"}') == {"reason": "r"}
