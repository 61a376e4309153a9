"""Ed25519 signatures over canonical JSON, compatible with the Go runner.

Signed bytes are the canonical JSON (``beacon.crypto.canonical``) of the document with ``signature``
and ``public_key`` set to ``""``. Verification also accepts, in order, the forms the Go
ecosystem produced: the same without ``id`` (the portal signs before an id exists), the portal
form (``id`` and ``created_at`` dropped, then empty values dropped recursively) and the legacy
form (``signature`` and ``public_key`` removed).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from beacon.crypto.canonical import canonical_json

SIGNATURE_FIELDS = ("signature", "public_key")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, expected_len: int, what: str) -> bytes:
    """Decode standard base64 of an exact length, or raise ValueError naming ``what``."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid standard base64") from None
    if len(raw) != expected_len:
        raise ValueError(f"{what} must decode to {expected_len} bytes, got {len(raw)}")
    return raw


def _blank_signature(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "signature": "", "public_key": ""}


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            item = _drop_empty(item)
            if item is None or item == "" or item == {} or (item == 0 and not isinstance(item, bool)):
                continue
            kept[key] = item
        return kept
    if isinstance(value, list):
        return [_drop_empty(item) for item in value]
    return value


def _current(doc: dict[str, Any]) -> dict[str, Any]:
    return _blank_signature(doc)


def _without_id(doc: dict[str, Any]) -> dict[str, Any]:
    return _blank_signature({k: v for k, v in doc.items() if k != "id"})


def _portal(doc: dict[str, Any]) -> dict[str, Any]:
    trimmed = {k: v for k, v in doc.items() if k not in ("id", "created_at", *SIGNATURE_FIELDS)}
    return _blank_signature(_drop_empty(trimmed))


def _legacy(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in SIGNATURE_FIELDS}


# Tried in this order; the first that verifies names the form.
FORMS: tuple[tuple[str, Callable[[dict[str, Any]], dict[str, Any]]], ...] = (
    ("current", _current),
    ("without_id", _without_id),
    ("portal", _portal),
    ("legacy", _legacy),
)


def signing_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes a signer signs: the current canonical form."""
    return canonical_json(_current(doc))


def sign_document(doc: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``public_key`` and ``signature`` filled in."""
    signature = key.sign(signing_bytes(doc)).signature
    return {**doc, "signature": b64encode(signature), "public_key": b64encode(bytes(key.verify_key))}


def verify_document(doc: dict[str, Any]) -> str | None:
    """The name of the form whose bytes the document's signature verifies, or None.

    Raises ValueError when ``signature`` or ``public_key`` is missing or malformed.
    """
    signature_text, key_text = doc.get("signature"), doc.get("public_key")
    if not isinstance(signature_text, str) or not isinstance(key_text, str):
        raise ValueError("signature and public_key must be base64 strings")
    signature = b64decode(signature_text, 64, "signature")
    verify_key = VerifyKey(b64decode(key_text, 32, "public_key"))
    for name, form in FORMS:
        try:
            verify_key.verify(canonical_json(form(doc)), signature)
        except BadSignatureError:
            continue
        return name
    return None


@dataclass(frozen=True)
class KeyPair:
    signing_key: SigningKey

    @property
    def public_key_b64(self) -> str:
        return b64encode(bytes(self.signing_key.verify_key))

    @classmethod
    def generate(cls) -> "KeyPair":
        return cls(SigningKey.generate())

    @classmethod
    def load(cls, path: str | Path) -> "KeyPair":
        """Read a private key file: the standard base64 of the 32-byte Ed25519 seed."""
        text = Path(path).read_text().strip()
        return cls(SigningKey(b64decode(text, 32, f"private key in {path}")))

    def save(self, path: str | Path, *, replace: bool = True) -> bool:
        """Write the private key (mode 0600) and ``<path>.pub`` beside it. The key file appears
        whole or not at all. With ``replace=False`` an existing key is kept and False returned:
        ``os.link`` refuses an existing target, so among concurrent writers exactly one wins."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(b64encode(bytes(self.signing_key)) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                try:
                    os.link(tmp, path)
                except FileExistsError:
                    return False
        finally:
            tmp.unlink(missing_ok=True)
        Path(f"{path}.pub").write_text(self.public_key_b64 + "\n")
        return True
