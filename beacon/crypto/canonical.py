"""Canonical JSON bytes, byte-for-byte as the Go runner signs them.

Keys sorted, no whitespace, non-ASCII kept as UTF-8, strings escaped the way Go 1.22+
``encoding/json`` escapes them (HTML-safe), numbers printed the way Go prints them.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    if ch <= "\x1f":
        return f"\\u{ord(ch):04x}"
    return "\ufffd"  # a lone surrogate is invalid UTF-8; Go writes U+FFFD


# Everything Go's encoder does not copy through as it is.
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\<>&\u2028\u2029\ud800-\udfff]')


def _string(value: str) -> str:
    return '"' + _NEEDS_ESCAPE.sub(_escape_char, value) + '"'


def go_float(value: float) -> str:
    """Format a float as Go's encoding/json does (shortest round-trip, 'e' only outside [1e-6, 1e21))."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinity have no JSON form")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, exponent = repr(value).split("e")
        sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
        if sign == "+":
            digits = digits.zfill(2)
        return f"{mantissa}e{sign}{digits}"
    if value == 0:
        return "-0" if repr(value).startswith("-") else "0"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(value, dict):
        out.append("{")
        for index, key in enumerate(sorted(value)):
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, got {type(key).__name__}")
            if index:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def encode_portable(value: Any) -> bytes:
    """The canonical bytes, written value by value (the reference for ``canonical_json``)."""
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8", errors="surrogatepass")


# Characters the standard library's encoder copies through but Go escapes (only ever inside strings).
_HTML_SAFE = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def _html_safe(text: str) -> str:
    for char, escaped in _HTML_SAFE:
        if char in text:
            text = text.replace(char, escaped)
    return text


class _NeedsPortable(Exception):
    """The value holds something only the value-by-value encoder writes as Go does."""


def _for_stdlib(value: Any) -> Any:
    """A copy json.dumps writes exactly as Go (but for ``_HTML_SAFE``).

    Integral floats up to 2**53 become ints (Go prints 1.0 as 1; there every integer is its own
    shortest form). Raises _NeedsPortable for non-string keys, NaN, infinities, -0.0 and floats
    Python would print in another notation than Go.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most values: nothing to copy or check
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= 2**53 and (value or math.copysign(1.0, value) > 0):
            return int(value)
        if value != value or value in (float("inf"), float("-inf")) or go_float(value) != repr(value):
            raise _NeedsPortable
        return value
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NeedsPortable
            copy[key] = _for_stdlib(item)
        return copy
    if isinstance(value, (list, tuple)):
        return [_for_stdlib(item) for item in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The canonical UTF-8 bytes of a JSON value (the C encoder when it gives the same bytes)."""
    try:
        text = json.dumps(_for_stdlib(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                          allow_nan=False)
        return _html_safe(text).encode("utf-8")
    except (_NeedsPortable, UnicodeEncodeError):  # UnicodeEncodeError: a lone surrogate, see _escape_char
        return encode_portable(value)


def _parse_int(text: str) -> int | float:
    # Go decodes every JSON number as float64, so "-0" is negative zero and prints as "-0" again.
    return -0.0 if text.lstrip("-") == "0" and text.startswith("-") else int(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes, **hooks: Any) -> Any:
    """Decode JSON so that canonical_json re-encodes numbers as the Go runner does.

    ``hooks`` go to ``json.loads`` (e.g. ``object_pairs_hook``, ``parse_float``).
    """
    return json.loads(text, parse_int=_parse_int, parse_constant=_reject_constant, **hooks)
