"""Raw JSON request bodies, decoded defensively: every hostile body is a 400 with the error envelope.

``parse_body`` turns the raw bytes into a JSON value, checking in this order:

1. UTF-8 (strict: no encoded surrogates) → ``invalid_json`` (``details.reason: encoding``);
2. nesting depth, by a scan of the text before any parsing (strings skipped, so brackets inside
   them do not count) → ``invalid_json`` (``reason: depth``) past ``MAX_DEPTH`` levels;
3. the JSON grammar → ``invalid_json`` (``reason: syntax``), and numbers JSON cannot carry (NaN,
   Infinity, beyond a double, integers longer than Python parses) → ``invalid_json``
   (``reason: number``);
4. an object key written twice → ``duplicate_key``, ``details.field`` naming the key's path;
5. a string (key or value) holding U+0000 or a lone surrogate (neither fits a Postgres text or
   JSONB column, nor survives a round trip through UTF-8) → ``validation_error`` naming the path.

Numbers decode as ``beacon.crypto.canonical.loads`` decodes them, so signatures verify alike.
Paths use the JobSpec's notation: ``metadata.nonce``, ``models[1].id``; ``$`` is the root.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, Iterator

from beacon.crypto.canonical import loads
from beacon.errors import Invalid, ValidationError

MAX_DEPTH = 64
ROOT = "$"
MAX_KEY_IN_PATH = 64  # characters of one key shown in a path (a hostile key may be a megabyte)

# A complete JSON string (escapes included); what is left after removing them is structure.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
# +1 for an opening bracket, -1 for a closing one, by byte value.
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1
# Only these escapes can put U+0000 or a surrogate into a decoded string: strict UTF-8 rejects
# encoded surrogates and the JSON grammar rejects a raw control character.
_SUSPICIOUS_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class _NumberOutOfRange(ValueError):
    pass


class _Duplicated(dict):
    """An object in which ``key`` was written more than once (only built on the error path)."""

    key: str


def invalid_json(message: str, reason: str) -> Invalid:
    return Invalid("invalid_json", message, {"reason": reason})


def nesting_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, brackets inside strings ignored.

    A streaming count over the structural characters only; an unterminated string ends the scan
    (everything after its quote would be inside it).
    """
    if "[" not in text and "{" not in text:
        return 0
    structure = _STRING.sub("", text).split('"', 1)[0]
    brackets = _NOT_BRACKET.sub("", structure).encode("ascii")
    return max(0, max(accumulate(map(_STEP.__getitem__, brackets)), default=0))


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NumberOutOfRange(text[:40])
    return value


def _object_hook(flagged: list[bool]):
    """``object_pairs_hook`` building dicts; an object with a repeated key is marked and flagged."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        if len(obj) == len(pairs):
            return obj
        seen: set[str] = set()
        duplicated = _Duplicated(obj)
        duplicated.key = next(key for key, _ in pairs if key in seen or seen.add(key))
        flagged.append(True)
        return duplicated

    return build


def _child(path: str, key: str) -> str:
    shown = key if len(key) <= MAX_KEY_IN_PATH else key[:MAX_KEY_IN_PATH] + "…"
    return f"{path}.{shown}" if path else shown


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, Any, str | None]]:
    """(path, value, key) of every value in document order; ``key`` set for object members."""
    yield path, value, None
    if isinstance(value, dict):
        for key, item in value.items():
            child = _child(path, key)
            yield child, key, key
            yield from _walk(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _find_duplicate(doc: Any) -> None:
    for path, value, key in _walk(doc):
        if key is None and isinstance(value, _Duplicated):
            where = _child(path, value.key)
            raise Invalid("duplicate_key", f"the key {where} appears more than once in its object",
                           {"field": where, "key": value.key[:MAX_KEY_IN_PATH]})


def _find_bad_string(doc: Any) -> None:
    for path, value, key in _walk(doc):
        if isinstance(value, str) and _BAD_CHARACTER.search(value):
            what = "key" if key is not None else "string"
            found = "U+0000" if "\x00" in value else "a lone surrogate"
            raise ValidationError(f"the {what} at {path or ROOT} contains {found}, which is not allowed",
                                  path or ROOT)


def parse_body(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a request body, or an Invalid error (see the module docstring)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_json("request body is not UTF-8", "encoding") from None
    # Fewer opening brackets than the limit cannot nest past it: most bodies skip the scan.
    if text.count("[") + text.count("{") > max_depth and nesting_depth(text) > max_depth:
        raise invalid_json(f"request body nests arrays and objects deeper than {max_depth} levels", "depth")
    duplicated: list[bool] = []
    try:
        doc = loads(text, object_pairs_hook=_object_hook(duplicated), parse_float=_finite_float)
    except _NumberOutOfRange as exc:
        raise invalid_json(f"request body holds a number out of range: {exc}", "number") from None
    except json.JSONDecodeError as exc:
        raise invalid_json(f"request body is not valid JSON: {exc}", "syntax") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise invalid_json(f"request body holds a number that cannot be read: {str(exc)[:200]}", "number") from None
    except RecursionError:  # unreachable after the depth scan; kept as the last line of defence
        raise invalid_json("request body nests too deeply", "depth") from None
    if duplicated:
        _find_duplicate(doc)
    if _SUSPICIOUS_ESCAPE.search(text):
        _find_bad_string(doc)
    return doc


def parse_optional_body(raw: bytes) -> Any:
    """``parse_body`` for a body that may be left out: None when it is empty or only whitespace."""
    return parse_body(raw) if raw.strip() else None
