"""The Project Beacon portal's signed bytes: recursively sorted keys, then JavaScript's ``JSON.stringify``.

The portal (a browser app) signs ``new TextEncoder().encode(JSON.stringify(sortKeys(spec)))`` where
``sortKeys`` rebuilds every object by assigning ``result[key] = sortKeys(obj[key])`` for
``key`` in ``Object.keys(obj).sort()``. :func:`js_sorted_stringify` reproduces those bytes from the
Python value ``json.loads`` gives for the same document. The rules it follows, all from ECMAScript:

Key order
    ``Array.prototype.sort`` without a comparator compares strings by UTF-16 code units, not code
    points: an astral character (stored as a surrogate pair, D800-DBFF first) sorts *before*
    U+E000-U+FFFF, unlike Python's ``sorted``. Then ``JSON.stringify`` walks the object's own keys
    in property order, which puts *array-index* keys first, ascending by number, whatever order they
    were assigned in; the other keys follow in assignment (here: sorted) order. An array index is the
    canonical decimal form of an integer 0 .. 2**32 - 2: ``"0"``, ``"7"``, ``"10"``, ``"4294967294"``;
    not ``"01"``, ``"-1"``, ``"1.5"`` or ``"4294967295"``.

``__proto__`` keys vanish
    ``result["__proto__"] = v`` on a plain object calls the inherited ``__proto__`` setter instead
    of creating a property, so the portal's ``sortKeys`` drops every ``"__proto__"`` key (at any
    depth) and its value from the signed bytes. This module does the same, so the bytes match; a
    verifier must therefore reject documents that carry such a key, because the signature does not
    cover it.

Numbers
    Every number is an IEEE double (Python ints are rounded to the nearest double first, so
    integers beyond 2**53 lose digits; an int too large for a double becomes Infinity) and is
    printed by Number::toString: the shortest digits that round-trip, in plain notation for
    1e-7 < |x| < 1e21 and as ``1e+21`` / ``1.5e-7`` outside that range; ``-0`` prints ``0``;
    NaN and +/-Infinity print ``null``.

Strings
    Only ``"``, ``\\``, U+0000-U+001F (``\\b \\f \\n \\r \\t`` short, the rest ``\\u00xx`` with lower-case
    hex) and lone surrogates (``\\udxxx``, lower case) are escaped. Everything else, ``/``, ``<``,
    U+007F, U+2028 and all non-ASCII, is written raw and UTF-8 encoded. A JavaScript string is a
    sequence of UTF-16 code units, so two adjacent surrogate code points in a Python string (a high
    one then a low one) are the same string as the astral character they encode; both serialise to
    that character's UTF-8 bytes. (``json.loads`` already joins escaped pairs into one character.)

Other values
    ``True``/``False``/``None`` print ``true``/``false``/``null``; lists and tuples are arrays.
    Object keys must be ``str``; anything else (bytes, sets, non-str keys, ...) raises ``TypeError``,
    and a dict holding two keys that are the same JavaScript string (a surrogate pair spelt both
    ways) raises ``ValueError``.

Output has no whitespace. This module imports nothing from the rest of ``beacon``.
"""

from __future__ import annotations

import json.encoder
import re
from typing import Any

__all__ = ["js_sorted_stringify", "js_sort_keys", "js_number", "js_string", "is_array_index"]

# Python's own C string encoder (the ensure_ascii=False variant) escapes exactly the characters
# JSON.stringify escapes, with the same short forms and lower-case \u00xx, as long as the string
# holds no surrogate code point; those are handled here.
_encode_plain: Any = json.encoder.encode_basestring
_SURROGATE = re.compile("[\ud800-\udfff]")
_NEEDS_ESCAPE = re.compile('[\x00-\x1f"\\\\\ud800-\udfff]')
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")
_MAX_ARRAY_INDEX = 2**32 - 2
_EXACT_INT = 2**53
_PROTO = "__proto__"


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    short = _SHORT.get(ch)
    return short if short is not None else f"\\u{ord(ch):04x}"


def _js_units(value: str) -> str:
    """The string JavaScript holds for ``value``: adjacent high+low surrogate code points joined."""
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def js_string(value: str) -> str:
    """``JSON.stringify(value)`` for a string, quotes included."""
    if _SURROGATE.search(value) is None:
        return _encode_plain(value)
    return '"' + _NEEDS_ESCAPE.sub(_escape, _js_units(value)) + '"'


def js_number(value: int | float) -> str:
    """ECMAScript Number::toString of ``value`` (an int is first rounded to a double)."""
    if isinstance(value, int):
        if -_EXACT_INT <= value <= _EXACT_INT:
            return str(int(value))
        try:
            value = float(value)  # round half to even, as JavaScript reads a numeric literal
        except OverflowError:
            return "null"  # the literal would read as +/-Infinity
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        return "null"
    if value == 0:
        return "0"
    if value.is_integer() and -_EXACT_INT <= value <= _EXACT_INT:
        return str(int(value))
    # repr gives the shortest round-trip digits, the digits Number::toString uses; only the layout
    # differs. Split it into digits (no leading/trailing zeros) and the decimal exponent n, so that
    # value = 0.DIGITS * 10**n.
    text = repr(value)
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    raw = whole + frac
    stripped = raw.lstrip("0")
    n = len(whole) + (int(exp) if exp else 0) - (len(raw) - len(stripped))
    digits = stripped.rstrip("0")
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        esign = "+" if e >= 0 else "-"
        body = (digits[0] + ("." + digits[1:] if k > 1 else "")) + "e" + esign + str(abs(e))
    return sign + body


def is_array_index(key: str) -> bool:
    """Whether JavaScript treats the property key ``key`` as an array index (ordered numerically)."""
    return _ARRAY_INDEX.fullmatch(key) is not None and int(key) <= _MAX_ARRAY_INDEX


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _ordered_keys(obj: dict[Any, Any]) -> list[tuple[str, str]]:
    """(original key, JavaScript key) pairs in the order JSON.stringify(sortKeys(obj)) writes them."""
    pairs: list[tuple[str, str]] = []
    needs_utf16 = False
    for key in obj:
        if type(key) is not str:
            if not isinstance(key, str):
                raise TypeError(f"object keys must be str, not {type(key).__name__}")
            key = str.__str__(key)
        if key.isascii():
            pairs.append((key, key))
        else:
            needs_utf16 = True
            pairs.append((key, _js_units(key) if _SURROGATE.search(key) else key))
    if needs_utf16:
        seen = {js for _, js in pairs}
        if len(seen) != len(pairs):
            raise ValueError("two keys of one object are the same JavaScript string")
        pairs.sort(key=lambda pair: _utf16_key(pair[1]))
    else:
        pairs.sort(key=lambda pair: pair[1])
    indices = [pair for pair in pairs if pair[1][0:1].isdigit() and is_array_index(pair[1])]
    if not indices:
        return [pair for pair in pairs if pair[1] != _PROTO]
    indices.sort(key=lambda pair: int(pair[1]))
    return indices + [pair for pair in pairs if pair[1] != _PROTO and not is_array_index(pair[1])]


def _write(value: Any, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(js_string(value) if _SURROGATE.search(value) else _encode_plain(value))
    elif kind is dict:
        out.append("{")
        first = True
        for key, js_key in _ordered_keys(value):
            if first:
                first = False
            else:
                out.append(",")
            out.append(js_string(js_key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif kind is list or kind is tuple:
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int or kind is float:
        out.append(js_number(value))
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    elif isinstance(value, (int, float)):
        out.append(js_number(value))
    elif isinstance(value, str):
        out.append(js_string(str.__str__(value)))
    elif isinstance(value, dict):
        _write(dict(value), out)
    elif isinstance(value, (list, tuple)):
        _write(list(value), out)
    else:
        raise TypeError(f"{kind.__name__} has no JSON form")


def js_sorted_stringify(value: Any) -> bytes:
    """UTF-8 bytes of ``JSON.stringify(sortKeys(value))`` exactly as the portal computes them."""
    out: list[str] = []
    _write(value, out)
    return "".join(out).encode("utf-8")


def js_sort_keys(value: Any) -> Any:
    """A copy of ``value`` whose dicts iterate in the order :func:`js_sorted_stringify` writes them.

    Keys come out as the strings JavaScript sees (surrogate pairs joined); ``__proto__`` keys are
    dropped, as the portal's ``sortKeys`` drops them. ``json.dumps(js_sort_keys(v), separators=(",",
    ":"), ensure_ascii=False)`` still differs from :func:`js_sorted_stringify` in number formatting
    and lone-surrogate handling, so sign and verify with the latter.
    """
    if isinstance(value, dict):
        return {js_key: js_sort_keys(value[key]) for key, js_key in _ordered_keys(value)}
    if isinstance(value, (list, tuple)):
        return [js_sort_keys(item) for item in value]
    return value
