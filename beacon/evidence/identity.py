"""The runner's own Ed25519 identity: the key that signs receipts, bundles and tree heads.

Every process of one deployment that signs must sign with the same key: the API (tree heads)
and the workers (receipts, bundles); beat and Flower never load it. ``RUNNER_SIGNING_KEY`` names
the key file (the format ``beacon keygen`` / ``KeyPair.save`` writes); in production
(``Settings.production``) ``beacon api`` and ``beacon worker`` refuse to start without a usable
one (``beacon.cli.roles.require_runner_key``). A key file its group or others may read is logged
as a warning. Otherwise, in the embedded default, the key lives in the data
directory as ``runner-signing-key``: the first process to need it creates it, atomically (written
to a private temporary file, then hard-linked into place, which fails if another process won the
race), and every process then loads that one file.

Documents the runner signs carry a ``kind`` (so a receipt can never pass for a bundle or a tree
head) and are signed in the current canonical form only (``beacon.crypto.signing``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from beacon.crypto.signing import KeyPair, b64decode, sign_document, verify_document
from beacon.settings import Settings

log = logging.getLogger(__name__)

EMBEDDED_KEY_FILE = "runner-signing-key"

# The kinds of document the runner key signs.
RECEIPT_KIND = "execution_receipt"
BUNDLE_KIND = "evidence_bundle"
TREE_HEAD_KIND = "tree_head"
RUNNER_KINDS = (RECEIPT_KIND, BUNDLE_KIND, TREE_HEAD_KIND)


class RunnerKeyError(RuntimeError):
    """The runner's signing key cannot be loaded or created."""


@dataclass(frozen=True)
class RunnerIdentity:
    keypair: KeyPair
    path: Path

    @property
    def public_key(self) -> str:
        return self.keypair.public_key_b64

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def describe(self) -> dict[str, str]:
        return {"key_id": self.key_id, "public_key": self.public_key, "algorithm": "ed25519"}

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        return sign_document(doc, self.keypair.signing_key)


def key_id(public_key_b64: str) -> str:
    """A short, stable name for a public key: the first 16 hex digits of SHA-256 of its 32 bytes."""
    return hashlib.sha256(b64decode(public_key_b64, 32, "public_key")).hexdigest()[:16]


def _warn_if_readable_by_others(path: Path) -> None:
    """A private key the group or everyone may read is logged as a warning (``chmod 600`` it)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "the runner signing key file is readable by its group or by others; make it private (chmod 600) "
            "and owned by the user the runner runs as",
            extra={"path": str(path), "mode": oct(mode & 0o777)},
        )


def _load(path: Path) -> KeyPair:
    _warn_if_readable_by_others(path)
    try:
        return KeyPair.load(path)
    except FileNotFoundError:
        raise RunnerKeyError(f"runner signing key file {path} does not exist (RUNNER_SIGNING_KEY)") from None
    except (OSError, ValueError) as exc:
        raise RunnerKeyError(f"cannot load the runner signing key from {path}: {exc}") from None


def create_key_once(path: Path) -> bool:
    """Create the key file at ``path`` unless it exists (safe against concurrent processes).
    True when this call created it."""
    return not path.exists() and KeyPair.generate().save(path, replace=False)


@lru_cache(maxsize=8)
def _identity(configured: str | None, data_dir: Path) -> RunnerIdentity:
    if configured:
        path = Path(configured)
    else:
        path = data_dir / EMBEDDED_KEY_FILE
        if create_key_once(path):
            log.warning(
                "generated a runner signing key in the data directory; set RUNNER_SIGNING_KEY to a key "
                "file shared by every process in production",
                extra={"path": str(path)},
            )
    return RunnerIdentity(_load(path), path)


def runner_identity(settings: Settings) -> RunnerIdentity:
    """The process's runner identity (loaded once per key file). In production the key file must be
    configured: a key made up in the data directory would sign with an identity nobody shares."""
    if settings.production and not settings.runner_signing_key:
        raise RunnerKeyError("RUNNER_SIGNING_KEY is required in production: the path of the runner's key file")
    return _identity(settings.runner_signing_key, settings.data_dir)


def verify_runner_document(doc: Any, kind: str | None = None, public_key: str | None = None) -> str:
    """Check a document the runner signed; returns its key id, raises ValueError saying what failed.

    The signature must verify in the current canonical form; ``kind`` (when given) must match;
    with ``public_key`` (standard base64) the document must be signed by exactly that key.
    """
    if not isinstance(doc, dict):
        raise ValueError("a signed document must be a JSON object")
    if kind is not None and doc.get("kind") != kind:
        raise ValueError(f"expected a document of kind {kind!r}, got {doc.get('kind')!r}")
    if verify_document(doc) != "current":
        raise ValueError("the signature does not verify")
    if public_key is not None:
        b64decode(public_key, 32, "--public-key")
        if doc["public_key"] != public_key:
            raise ValueError(f"signed by key {key_id(doc['public_key'])}, not by the expected key {key_id(public_key)}")
    return key_id(doc["public_key"])
