"""A Sentry-compatible envelope sink on 127.0.0.1, so tests run a real sentry-sdk end to end.

It accepts ``POST /api/<project>/envelope/`` (gzip or plain, as the SDK sends it), parses the
envelope into items and keeps both the parsed items and the raw decompressed bytes (to search
for secrets). The DSN ``http://public@127.0.0.1:<port>/1`` points an SDK at it.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from tests.support import wait_for

ENVELOPE_PATH = re.compile(r"^/api/(\d+)/envelope/$")


@dataclass(frozen=True)
class Item:
    type: str
    header: dict[str, Any]
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


def parse_envelope(raw: bytes) -> tuple[dict[str, Any], list[Item]]:
    """The envelope header and its items (``length``-delimited or newline-delimited payloads)."""
    header_line, _, rest = raw.partition(b"\n")
    items = []
    while rest.strip():
        item_line, _, rest = rest.partition(b"\n")
        item_header = json.loads(item_line)
        if "length" in item_header:
            length = item_header["length"]
            payload, rest = rest[:length], rest[length:]
            if rest.startswith(b"\n"):
                rest = rest[1:]
        else:
            payload, _, rest = rest.partition(b"\n")
        items.append(Item(item_header["type"], item_header, payload))
    return json.loads(header_line), items


class SentrySink:
    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.items: list[Item] = []
        self.auth: list[str] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding", "identity")
                if not ENVELOPE_PATH.match(self.path):
                    return self._answer(404, {"detail": "not an envelope endpoint"})
                if encoding not in ("gzip", "identity"):
                    return self._answer(415, {"detail": f"unsupported Content-Encoding {encoding}"})
                raw = gzip.decompress(body) if encoding == "gzip" else body
                _, items = parse_envelope(raw)
                with sink._lock:
                    sink.raw.append(raw)
                    sink.items.extend(items)
                    sink.auth.append(self.headers.get("X-Sentry-Auth", ""))
                self._answer(200, {})

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:  # keep the test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self._server.server_port}/1"

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [item.json() for item in self.items if item.type == kind]

    def events(self) -> list[dict[str, Any]]:
        return self.of_type("event")

    def transactions(self) -> list[dict[str, Any]]:
        return self.of_type("transaction")

    def discarded(self, reason: str, category: str) -> int:
        """How many events the SDKs reported dropped for ``reason`` (their client reports)."""
        return sum(entry["quantity"] for report in self.of_type("client_report")
                   for entry in report.get("discarded_events", [])
                   if entry["reason"] == reason and entry["category"] == category)

    def all_bytes(self) -> bytes:
        with self._lock:
            return b"\n".join(self.raw)

    def wait_for_event(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 30) -> dict:
        return wait_for(lambda: next((e for e in self.events() if predicate(e)), None), timeout=timeout, what=what)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
