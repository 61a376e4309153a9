"""One node process per test session that signs and serialises exactly as the portal does.

``tests/js/portal-sign.mjs`` answers JSON lines; :func:`shared` starts it once (running ``npm ci``
first when ``tests/js/node_modules`` is missing or older than the lock file) and closes it when the
interpreter exits. Requests are written with ``json.dumps(ensure_ascii=True)``, which spells lone
surrogates as ``\\udxxx`` escapes that ``JSON.parse`` keeps as lone surrogates, and spells NaN and
+/-Infinity (no JSON form) as a marker object the script turns back into the number.
"""

from __future__ import annotations

import atexit
import base64
import json
import math
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "portal-sign.mjs"
NONFINITE_KEY = "$beacon-test:nonfinite-number"  # as in portal-sign.mjs

# What each signing form leaves out of the signed bytes (see portal-sign.mjs for the history).
FORM_OMITS: dict[str, tuple[str, ...]] = {
    "full": ("signature", "public_key"),
    "full-before-wallet_auth": ("signature", "public_key", "wallet_auth"),
    "no-id": ("signature", "public_key", "id"),
    "no-id-no-created_at": ("signature", "public_key", "id", "created_at"),
}
FORM_ALIASES = {
    "portal-2025-10": "no-id-no-created_at",
    "portal-2025-09": "full",
    "portal-early": "full-before-wallet_auth",
}


def projection(spec: dict[str, Any], form: str) -> dict[str, Any]:
    """The part of ``spec`` that ``form`` signs."""
    omit = FORM_OMITS[FORM_ALIASES.get(form, form)]
    return {key: value for key, value in spec.items() if key not in omit}


class JsClientError(RuntimeError):
    pass


def _ensure_node_modules() -> None:
    node_modules = JS_DIR / "node_modules"
    lock = JS_DIR / "package-lock.json"
    installed = node_modules / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise JsClientError("npm is not on PATH; the portal-compatibility tests need node and npm")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise JsClientError(f"npm ci failed in {JS_DIR}:\n{result.stdout}\n{result.stderr}")


def _encodable(value: Any) -> Any:
    """``value`` with non-finite floats replaced by the marker portal-sign.mjs revives."""
    if isinstance(value, float) and not math.isfinite(value):
        return {NONFINITE_KEY: "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")}
    if isinstance(value, dict):
        return {key: _encodable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(item) for item in value]
    return value


class PortalJs:
    """A running ``node portal-sign.mjs``; each call is one request line and one reply line."""

    def __init__(self) -> None:
        _ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise JsClientError("node is not on PATH")
        self._proc = subprocess.Popen(
            [node, str(SCRIPT)],
            cwd=JS_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._lock = threading.Lock()

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        line = json.dumps(_encodable(payload), ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"
        with self._lock:
            if self._proc.poll() is not None:
                raise JsClientError(f"node exited with {self._proc.returncode}: {self._stderr()}")
            assert self._proc.stdin is not None and self._proc.stdout is not None
            try:
                self._proc.stdin.write(line)
                self._proc.stdin.flush()
            except BrokenPipeError as exc:
                raise JsClientError(f"node went away: {self._stderr()}") from exc
            reply_line = self._proc.stdout.readline()
        if not reply_line:
            raise JsClientError(f"node closed its output: {self._stderr()}")
        reply = json.loads(reply_line.decode("utf-8"))
        if "error" in reply:
            raise JsClientError(reply["error"])
        return reply

    def _stderr(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return ""
        return self._proc.stderr.read().decode("utf-8", "replace")

    def sign(self, spec: dict[str, Any], form: str, seed: bytes) -> tuple[dict[str, Any], bytes]:
        """(the signed spec, the exact bytes the portal signed) for ``spec`` under ``form``."""
        reply = self.request({"op": "sign", "spec": spec, "form": form, "seed_hex": seed.hex()})
        return reply["signed"], base64.b64decode(reply["bytes_b64"])

    def stringify(self, value: Any) -> bytes:
        """UTF-8 bytes of the portal's ``JSON.stringify(sortKeys(value))``."""
        return base64.b64decode(self.request({"op": "stringify", "value": value})["bytes_b64"])

    def stringify_many(self, values: list[Any]) -> list[bytes]:
        """:meth:`stringify` for many values in one round trip."""
        texts = self.request({"op": "stringify_many", "values": values})["texts"]
        return [text.encode("utf-8") for text in texts]

    def wallet(self, private_key_hex: str, message: str) -> tuple[str, str]:
        """(checksummed address, 0x signature) from ethers ``Wallet.signMessage`` (EIP-191)."""
        reply = self.request({"op": "wallet", "private_key_hex": private_key_hex, "message": message})
        return reply["address"], reply["signature"]

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream is not None:
                stream.close()


_shared: PortalJs | None = None
_shared_lock = threading.Lock()


def shared() -> PortalJs:
    """The session's one node process, started on first use and closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PortalJs()
            atexit.register(_shared.close)
        return _shared
