"""A minimal client of a Kubo-compatible node's HTTP RPC API (``IPFS_API_URL``).

The two calls bundling needs, and ``POST /api/v0/version`` for health: ``POST /api/v0/add`` (multipart, Kubo's default import
settings: CIDv0, no raw leaves, 256 KiB chunks; ``pin=false`` so nothing is pinned before its CID
is checked) and ``POST /api/v0/pin/add?arg=<cid>``.
"""

from __future__ import annotations

import json

import requests


class IpfsError(RuntimeError):
    """The node is unreachable or answered with an error."""


class IpfsRpc:
    def __init__(self, base_url: str, timeout_s: float):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _post(self, command: str, **kwargs) -> requests.Response:
        url = f"{self.base_url}/api/v0/{command}"
        try:
            response = requests.post(url, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise IpfsError(f"IPFS node at {self.base_url} unreachable: {exc}") from None
        if response.status_code != 200:
            try:
                message = response.json().get("Message") or response.text
            except ValueError:
                message = response.text
            raise IpfsError(f"IPFS {command} answered HTTP {response.status_code}: {message.strip()[:300]}")
        return response

    def version(self) -> str:
        """The node's version (a cheap liveness probe)."""
        try:
            return str(self._post("version").json().get("Version", ""))
        except (ValueError, AttributeError):
            raise IpfsError("IPFS version answered something that is not a JSON object") from None

    def add(self, data: bytes, name: str = "bundle.json") -> str:
        """Add one file with the node's defaults; returns the CID the node computed."""
        response = self._post("add", params={"pin": "false", "progress": "false"},
                              files={"file": (name, data, "application/octet-stream")})
        hashes = []
        for line in response.text.splitlines():
            try:
                item = json.loads(line) if line.strip() else None
            except ValueError:
                raise IpfsError(f"IPFS add answered a line that is not JSON: {line[:200]!r}") from None
            if isinstance(item, dict) and item.get("Hash"):
                hashes.append(str(item["Hash"]))
        if not hashes:
            raise IpfsError(f"IPFS add answered no Hash: {response.text[:300]!r}")
        return hashes[-1]

    def pin(self, cid: str) -> None:
        """Pin ``cid`` (recursively) on the node."""
        response = self._post("pin/add", params={"arg": cid})
        try:
            pins = response.json().get("Pins") or []
        except (ValueError, AttributeError):
            raise IpfsError(f"IPFS pin/add answered something that is not JSON: {response.text[:300]!r}") from None
        if cid not in pins:
            raise IpfsError(f"IPFS pin/add did not confirm {cid} (Pins: {pins})")
