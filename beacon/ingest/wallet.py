"""Checks the Project Beacon portal's ``wallet_auth``: an Ethereum wallet vouching for an Ed25519 key.

The portal asks the user's wallet (MetaMask, Brave, ...) to ``personal_sign`` the text
``Authorize Project Beacon key: <base64 Ed25519 public key>`` and sends, inside the signed JobSpec::

    "wallet_auth": {"address": "0x67f3…", "signature": "0x<65 bytes hex>",
                    "message": "Authorize Project Beacon key: qBP0…=", "chainId": 1,
                    "nonce": "8AfOoEtH5bw40UB4pacMJQ", "expiresAt": "2025-10-19T14:11:59.079Z"}

:func:`verify_wallet_auth` accepts it only if the message names exactly the spec's public key, the
signature is a valid EIP-191 (``personal_sign``) signature whose recovered signer is ``address``, and
``expiresAt`` lies after ``now``. Anything else raises :class:`WalletAuthInvalid` with a short reason:
``malformed``, ``message_mismatch``, ``bad_signature``, ``address_mismatch`` or ``expired``; no other
exception escapes for any input, however hostile.

Libraries: ``coincurve`` (secp256k1 public-key recovery) and ``pycryptodome`` (Keccak-256).
coincurve wraps bitcoin-core's libsecp256k1, the reference implementation Ethereum clients use for
``ecrecover``, and ships binary wheels with the library built in and no Python dependencies;
pycryptodome ships binary wheels, has no dependencies and provides the original Keccak-256
(``hashlib.sha3_256`` is the *padded differently* NIST SHA3 and gives other digests). Together they
are two self-contained wheels, against ``eth-keys`` + ``eth-hash`` which pull in eth-utils,
eth-typing, hexbytes, cytoolz/toolz and pure-Python curve maths. Requirements:
``coincurve>=20`` and ``pycryptodome>=3.20``.

Strictness: the signature must be ``0x`` + 130 hex digits (the ``0x`` is optional), ``r`` and ``s``
in range and ``s`` in the lower half of the curve order (EIP-2; every wallet signs that way, and it
leaves one valid encoding per signature); ``v`` may be 27/28 or 0/1. ``address`` must be ``0x`` + 40
hex digits; it is compared case-insensitively (no EIP-55 checksum check). All six fields must be
present with the portal's types (``chainId`` an integer); extra fields are ignored. ``expiresAt``
must be an RFC 3339 timestamp with a time zone (``Z`` or ``±hh:mm``), fraction optional; it must be
strictly later than ``now``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from coincurve import PublicKey
from Crypto.Hash import keccak

__all__ = ["WalletAuthInvalid", "AUTH_MESSAGE_PREFIX", "auth_message", "recover_address", "verify_wallet_auth"]

AUTH_MESSAGE_PREFIX = "Authorize Project Beacon key: "

REASONS = frozenset({"malformed", "message_mismatch", "bad_signature", "address_mismatch", "expired"})

# secp256k1 group order.
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _N // 2

_SIGNATURE_HEX = re.compile(r"(?:0x|0X)?([0-9a-fA-F]{130})")
_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
_FIELDS = ("address", "signature", "message", "chainId", "nonce", "expiresAt")


class WalletAuthInvalid(ValueError):
    """``wallet_auth`` was refused; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


def auth_message(public_key_b64: str) -> str:
    """The text the portal asks the wallet to sign for ``public_key_b64``."""
    return AUTH_MESSAGE_PREFIX + public_key_b64


def _keccak256(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def _eip191_hash(message: str) -> bytes:
    try:
        body = message.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 form, no wallet signed it
        raise WalletAuthInvalid("malformed", "message is not valid Unicode") from exc
    return _keccak256(b"\x19Ethereum Signed Message:\n" + str(len(body)).encode("ascii") + body)


def recover_address(message: str, signature_hex: str) -> str:
    """The lower-case ``0x`` address whose key made ``signature_hex`` by ``personal_sign(message)``.

    Raises :class:`WalletAuthInvalid` (``malformed`` for wrong types or encoding, ``bad_signature``
    for a well-formed signature that recovers no key or is not in canonical form).
    """
    if not isinstance(message, str) or not isinstance(signature_hex, str):
        raise WalletAuthInvalid("malformed", "message and signature must be strings")
    match = _SIGNATURE_HEX.fullmatch(signature_hex)
    if match is None:
        raise WalletAuthInvalid("malformed", "signature must be 65 bytes of hex")
    raw = bytes.fromhex(match.group(1))
    r = int.from_bytes(raw[0:32], "big")
    s = int.from_bytes(raw[32:64], "big")
    v = raw[64]
    if v in (27, 28):
        recid = v - 27
    elif v in (0, 1):
        recid = v
    else:
        raise WalletAuthInvalid("bad_signature", f"v={v} is not 0, 1, 27 or 28")
    if not (0 < r < _N) or not (0 < s <= _HALF_N):
        raise WalletAuthInvalid("bad_signature", "r or s out of range (s must be low)")
    digest = _eip191_hash(message)
    try:
        public_key = PublicKey.from_signature_and_message(raw[:64] + bytes([recid]), digest, hasher=None)
    except Exception as exc:  # libsecp256k1 found no point for r, or no key
        raise WalletAuthInvalid("bad_signature", "no public key recovers from the signature") from exc
    return "0x" + _keccak256(public_key.format(compressed=False)[1:])[-20:].hex()


def _parse_expiry(text: str) -> datetime:
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise WalletAuthInvalid("malformed", "expiresAt is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "").ljust(6, "0")[:6])
    if match.group(8):
        tz = timezone.utc
    else:
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if offset >= timedelta(hours=24):
            raise WalletAuthInvalid("malformed", "expiresAt has an impossible offset")
        tz = timezone(-offset if match.group(9) == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:  # month 13, second 60, ...
        raise WalletAuthInvalid("malformed", "expiresAt is not a real instant") from exc


def verify_wallet_auth(wallet_auth: Any, public_key_b64: Any, now: datetime, *, check_expiry: bool = True) -> str:
    """Check ``wallet_auth`` for the spec signed by ``public_key_b64``; return the lower-case address.

    ``now`` must be a time-zone-aware datetime (a naive one is a programming error: ``TypeError``).
    With ``check_expiry=False`` the expiry is still parsed but not compared (for archived payloads).
    """
    if not isinstance(now, datetime) or now.utcoffset() is None:
        raise TypeError("now must be a time-zone-aware datetime")
    if not isinstance(wallet_auth, dict):
        raise WalletAuthInvalid("malformed", "wallet_auth must be an object")
    missing = [field for field in _FIELDS if field not in wallet_auth]
    if missing:
        raise WalletAuthInvalid("malformed", f"wallet_auth lacks {', '.join(missing)}")
    address = wallet_auth["address"]
    signature = wallet_auth["signature"]
    message = wallet_auth["message"]
    chain_id = wallet_auth["chainId"]
    nonce = wallet_auth["nonce"]
    expires_at = wallet_auth["expiresAt"]
    if not all(isinstance(value, str) for value in (address, signature, message, nonce, expires_at)):
        raise WalletAuthInvalid("malformed", "address, signature, message, nonce and expiresAt must be strings")
    if type(chain_id) is not int or chain_id < 0:
        raise WalletAuthInvalid("malformed", "chainId must be a non-negative integer")
    if _ADDRESS.fullmatch(address) is None:
        raise WalletAuthInvalid("malformed", "address must be 0x and 40 hex digits")
    if not isinstance(public_key_b64, str) or not public_key_b64:
        raise WalletAuthInvalid("malformed", "the spec's public key must be a non-empty string")
    expiry = _parse_expiry(expires_at)

    if message != auth_message(public_key_b64):
        raise WalletAuthInvalid("message_mismatch", "message does not authorise this public key")
    recovered = recover_address(message, signature)
    if recovered != address.lower():
        raise WalletAuthInvalid("address_mismatch", f"signature is by {recovered}, not {address.lower()}")
    if check_expiry and not expiry > now:
        raise WalletAuthInvalid("expired", f"expired at {expires_at}")
    return recovered


def load_allowlist(path: str | None) -> frozenset[str]:
    """``WALLET_ALLOWLIST_FILE``: a JSON array of 0x addresses, lower-cased. Read once at startup;
    a bad file is a startup error (ValueError naming the file and entry)."""
    if not path:
        return frozenset()
    try:
        entries = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"WALLET_ALLOWLIST_FILE {path}: cannot read a JSON array: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError(f"WALLET_ALLOWLIST_FILE {path}: must be a JSON array of addresses")
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not _ADDRESS.fullmatch(entry):
            raise ValueError(f"WALLET_ALLOWLIST_FILE {path}: entry {index} is not a 0x address: {entry!r}")
    return frozenset(entry.lower() for entry in entries)
