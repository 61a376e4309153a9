"""The trusted keys allowlist: which public keys may submit jobs, and when.

The file is a JSON array of ``{kid, public_key, status: active|revoked, not_before?,
not_after?}``. It is validated on load (a bad file is a clear startup error) and reloaded when
its modification time or size changes.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from beacon.crypto.signing import canonical_public_key
from beacon.errors import Invalid
from beacon.timeutil import parse_rfc3339

log = logging.getLogger(__name__)

KEY_FIELDS = {"kid", "public_key", "status", "not_before", "not_after"}


class TrustFileError(ValueError):
    """The trusted keys file cannot be used."""


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    public_key: str
    status: str
    not_before: datetime | None
    not_after: datetime | None


def parse_trusted_keys(text: str, source: str) -> dict[str, TrustedKey]:
    """Parse and validate a trusted keys document; keyed by the key's canonical base64 spelling."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise TrustFileError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, list):
        raise TrustFileError(f"{source}: must be a JSON array of key entries")
    keys: dict[str, TrustedKey] = {}
    kids: set[str] = set()
    for index, entry in enumerate(doc):
        where = f"{source}: entry {index}"
        if not isinstance(entry, dict):
            raise TrustFileError(f"{where}: must be an object")
        unknown = sorted(set(entry) - KEY_FIELDS)
        if unknown:
            raise TrustFileError(f"{where}: unknown field {unknown[0]}")
        kid, public_key, status = entry.get("kid"), entry.get("public_key"), entry.get("status")
        if not isinstance(kid, str) or not kid:
            raise TrustFileError(f"{where}: kid must be a non-empty string")
        if not isinstance(public_key, str):
            raise TrustFileError(f"{where} ({kid}): public_key must be a base64 string")
        try:
            public_key = canonical_public_key(public_key)
        except ValueError as exc:
            raise TrustFileError(f"{where} ({kid}): {exc}") from None
        if status not in ("active", "revoked"):
            raise TrustFileError(f"{where} ({kid}): status must be active or revoked, got {status!r}")
        window = {}
        for name in ("not_before", "not_after"):
            value = entry.get(name)
            try:
                window[name] = None if value is None else parse_rfc3339(value)
            except ValueError:
                raise TrustFileError(f"{where} ({kid}): {name} must be an RFC 3339 time, got {value!r}") from None
        if window["not_before"] and window["not_after"] and window["not_before"] >= window["not_after"]:
            raise TrustFileError(f"{where} ({kid}): not_before must be earlier than not_after")
        if kid in kids:
            raise TrustFileError(f"{where}: duplicate kid {kid}")
        if public_key in keys:
            raise TrustFileError(f"{where} ({kid}): duplicate public_key (also kid {keys[public_key].kid})")
        kids.add(kid)
        keys[public_key] = TrustedKey(kid, public_key, status, window["not_before"], window["not_after"])
    return keys


class TrustStore:
    """The allowlist, reloaded from its file when the file changes."""

    def __init__(self, path: str | None, enforce: bool = True):
        self.path = Path(path) if path else None
        self.enforce = enforce
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, TrustedKey] = {}
        if self.path is None:
            if enforce:
                log.warning(
                    "TRUST_ENFORCE is on and TRUSTED_KEYS_FILE is not set: every submission will be "
                    "rejected with trust_violation:unknown"
                )
        else:
            self.reload()

    def reload(self) -> int:
        """Read the file now (raises TrustFileError on a bad file); returns the number of keys."""
        if self.path is None:
            return 0
        try:
            stat = os.stat(self.path)
            text = self.path.read_text()
        except OSError as exc:
            raise TrustFileError(f"{self.path}: cannot read: {exc.strerror}") from None
        keys = parse_trusted_keys(text, str(self.path))
        with self._lock:
            self._keys, self._stamp = keys, (stat.st_mtime_ns, stat.st_size)
        log.info("trusted keys loaded", extra={"path": str(self.path), "keys": len(keys)})
        return len(keys)

    def _refresh(self) -> None:
        if self.path is None:
            return
        try:
            stat = os.stat(self.path)
        except OSError:
            return  # keep the last good set while the file is being replaced
        if (stat.st_mtime_ns, stat.st_size) != self._stamp:
            try:
                self.reload()
            except TrustFileError as exc:
                log.error("trusted keys file changed but is invalid; keeping the previous keys: %s", exc)

    def check(self, public_key: str, now: datetime) -> None:
        """Raise the matching ``trust_violation:*`` Invalid error unless the key may submit now."""
        if not self.enforce:
            return
        self._refresh()
        try:
            key = self._keys.get(canonical_public_key(public_key))
        except ValueError:  # not a key at all: the signature check would fail it too
            key = None
        if key is None:
            raise Invalid("trust_violation:unknown", "public key is not in the trusted keys")
        details = {"kid": key.kid}
        if key.status == "revoked":
            raise Invalid("trust_violation:revoked", f"key {key.kid} is revoked", details)
        if key.not_before and now < key.not_before:
            raise Invalid("trust_violation:not_yet_valid", f"key {key.kid} is not valid yet", details)
        if key.not_after and now >= key.not_after:
            raise Invalid("trust_violation:expired", f"key {key.kid} has expired", details)
