"""Ed25519 signatures over the bytes a form defines, compatible with the Go runner and the portal.

The runner signs in the **current** form: Go's canonical JSON (``beacon.crypto.canonical``) of
the document with ``signature`` and ``public_key`` set to ``""``. Verification accepts, in order,
the forms real clients produced (``docs/signatures.md``):

==============================  ==========================================  ==========================
form                            signed bytes                                covers
==============================  ==========================================  ==========================
``current``                     Go canonical, signature/public_key ``""``   everything
``without_id``                  the same without ``id``                     all but ``id``
``portal``                      JS sorted stringify, minus signature,       all but ``id``,
                                public_key, ``id``, ``created_at``          ``created_at``
``portal_with_created_at``      the same, ``created_at`` kept               all but ``id``
``portal_full``                 the same, ``id`` and ``created_at`` kept    everything
``legacy``                      Go canonical, signature/public_key removed  everything
==============================  ==========================================  ==========================

**What runs is what was signed**: each form's :meth:`Form.projection` is the document restricted
to the fields its bytes cover; the runner executes that projection and never trusts a field
outside it. A submission's identity is (decoded key bytes, form, SHA-256 of the signed bytes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from beacon.crypto.canonical import canonical_json
from beacon.crypto.jsjson import js_sorted_stringify

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


def canonical_public_key(text: str) -> str:
    """The one spelling of a public key: base64 of its decoded 32 bytes.

    Base64 has several spellings of the same bytes (the unused low bits of the last character);
    nonces, trust and identities compare keys by their bytes, through this spelling.
    """
    return b64encode(b64decode(text, 32, "public_key"))


@dataclass(frozen=True)
class Form:
    """One accepted way of turning a document into signed bytes."""

    name: str
    uncovered: frozenset[str]  # top-level fields the signed bytes leave out (besides signature/public_key)
    blank_signature: bool  # Go's current forms sign with signature and public_key set to ""
    serialise: Callable[[Any], bytes]

    def projection(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The fields the signature covers, without ``signature`` and ``public_key``."""
        return {k: v for k, v in doc.items() if k not in self.uncovered and k not in SIGNATURE_FIELDS}

    def covers(self, field: str) -> bool:
        return field not in self.uncovered

    def signed_bytes(self, doc: dict[str, Any]) -> bytes:
        projection = self.projection(doc)
        if self.blank_signature:
            projection = {**projection, "signature": "", "public_key": ""}
        return self.serialise(projection)

    def render(self, projection: dict[str, Any], signature: str, public_key: str) -> str:
        """The projection with its signature, serialised the form's own way: verifies as this form."""
        return self.serialise({**projection, "signature": signature, "public_key": public_key}).decode("utf-8")


# Tried in this order; the first that verifies names the form.
FORMS: tuple[Form, ...] = (
    Form("current", frozenset(), True, canonical_json),
    Form("without_id", frozenset({"id"}), True, canonical_json),
    Form("portal", frozenset({"id", "created_at"}), False, js_sorted_stringify),
    Form("portal_with_created_at", frozenset({"id"}), False, js_sorted_stringify),
    Form("portal_full", frozenset(), False, js_sorted_stringify),
    Form("legacy", frozenset(), False, canonical_json),
)
FORMS_BY_NAME = {form.name: form for form in FORMS}
CURRENT = FORMS[0]


@dataclass(frozen=True)
class Verified:
    """A document whose signature verified: the form, the key and the identity of the submission."""

    form: Form
    key_bytes: bytes
    signed_sha256: str

    @property
    def identity(self) -> str:
        """SHA-256 over (key bytes, form, SHA-256 of the signed bytes): the same signed content
        under the same key and form is the same submission, whatever the uncovered fields say."""
        return hashlib.sha256(self.key_bytes + b"\0" + self.form.name.encode() + b"\0"
                              + bytes.fromhex(self.signed_sha256)).hexdigest()


def signing_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes a signer signs: the current canonical form."""
    return CURRENT.signed_bytes(doc)


def sign_document(doc: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """Return a copy of ``doc`` with ``public_key`` and ``signature`` filled in."""
    signature = key.sign(signing_bytes(doc)).signature
    return {**doc, "signature": b64encode(signature), "public_key": b64encode(bytes(key.verify_key))}


def verify(doc: dict[str, Any]) -> Verified | None:
    """The first form whose bytes the document's signature verifies, or None.

    Raises ValueError when ``signature`` or ``public_key`` is missing or malformed.
    """
    signature_text, key_text = doc.get("signature"), doc.get("public_key")
    if not isinstance(signature_text, str) or not isinstance(key_text, str):
        raise ValueError("signature and public_key must be base64 strings")
    signature = b64decode(signature_text, 64, "signature")
    key_bytes = b64decode(key_text, 32, "public_key")
    verify_key = VerifyKey(key_bytes)
    for form in FORMS:
        try:
            signed = form.signed_bytes(doc)
        except (TypeError, ValueError):  # a value this form cannot serialise never verifies under it
            continue
        try:
            verify_key.verify(signed, signature)
        except BadSignatureError:
            continue
        return Verified(form, key_bytes, hashlib.sha256(signed).hexdigest())
    return None


def verify_document(doc: dict[str, Any]) -> str | None:
    """The name of the form the document's signature verifies under, or None (see :func:`verify`)."""
    verified = verify(doc)
    return None if verified is None else verified.form.name


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
