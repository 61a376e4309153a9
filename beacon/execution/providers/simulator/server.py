"""The simulator over HTTP: both provider protocols, and the test and fault hooks (see the package docstring)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from .answers import DEFAULT_REGION_BEHAVIOUR, PROVIDER_NAME, simulate_answer
from .provider import FaultDice, check_behaviour, check_latency, non_negative_number

# --------------------------------------------------------------------------- HTTP service

_CONTROL_KEYS = {"fail_next", "hang_next", "latency_ms", "region_latency_ms", "drip_next", "huge_next", "outage_s",
                 "outage_status"}
_HUGE_PIECE = 64 * 1024


def _check_shape_entry(entry: Any, name: str, required: dict[str, type], optional: dict[str, type]) -> list[dict]:
    """One drip_next / huge_next entry, expanded by its ``repeat``."""
    allowed = {"region", "repeat", *required, *optional}
    if not isinstance(entry, dict) or set(entry) - allowed or set(required) - set(entry):
        raise ValueError(f"{name} entries must have {sorted(required)} and may have {sorted(allowed - set(required))}")
    for key, kind in {**required, **optional, "repeat": int}.items():
        value = entry.get(key)
        if value is None:
            continue
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float else kind):
            raise ValueError(f"{name} {key} must be a {kind.__name__}, got {value!r}")
        if kind is not bool and value < 0:
            raise ValueError(f"{name} {key} must not be negative")
    if not isinstance(entry.get("region", ""), str):
        raise ValueError(f"{name} region must be a string")
    repeat = entry.get("repeat", 1)
    shaped = {k: v for k, v in entry.items() if k != "repeat"}
    return [dict(shaped, kind=name) for _ in range(repeat)]


def _check_fail_entry(entry: Any) -> dict:
    if not isinstance(entry, dict) or set(entry) - {"status", "region", "body"}:
        raise ValueError('fail_next entries must be {"status": int, "region"?: str, "body"?: str}')
    status = entry.get("status")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise ValueError(f"fail_next status must be an HTTP status code, got {status!r}")
    if not isinstance(entry.get("region", ""), str) or not isinstance(entry.get("body", ""), str):
        raise ValueError("fail_next region and body must be strings")
    return entry


class _SimulatorState:
    """Everything the HTTP service shares between request threads, behind one lock."""

    def __init__(self, latency_ms: float, dice: FaultDice):
        self._lock = threading.Lock()
        self._default_latency_ms = latency_ms
        self._dice = dice
        self._release = threading.Event()
        self._clear()

    def _clear(self) -> None:
        self.latency_ms = self._default_latency_ms
        self.region_latency_ms: dict[str, float] = {}
        self.fail_next: list[dict] = []
        self.shape_next: list[dict] = []  # drip_next / huge_next entries, in order
        self.outage_until = 0.0
        self.outage_status = 503
        self.hang_next = 0
        self.requests: list[dict] = []

    def control(self, payload: Any) -> None:
        if not isinstance(payload, dict) or set(payload) - _CONTROL_KEYS:
            raise ValueError(f"control body must be a JSON object with keys among {sorted(_CONTROL_KEYS)}")
        fail_next = payload.get("fail_next", [])
        if not isinstance(fail_next, list):
            raise ValueError("fail_next must be a list")
        entries = [_check_fail_entry(e) for e in fail_next]
        hang_next = payload.get("hang_next", 0)
        if not isinstance(hang_next, int) or isinstance(hang_next, bool) or hang_next < 0:
            raise ValueError("hang_next must be a non-negative integer")
        if "latency_ms" in payload and not non_negative_number(payload["latency_ms"]):
            raise ValueError("latency_ms must be a non-negative number")
        region_latency = payload.get("region_latency_ms", {})
        if not isinstance(region_latency, dict) or not all(non_negative_number(v) for v in region_latency.values()):
            raise ValueError("region_latency_ms must map regions to non-negative numbers")
        shapes = []
        for name, required, optional in (("drip_next", {"interval_ms": float}, {"chunk_bytes": int}),
                                         ("huge_next", {"bytes": int}, {"declared": bool})):
            listed = payload.get(name, [])
            if not isinstance(listed, list):
                raise ValueError(f"{name} must be a list")
            for entry in listed:
                shapes.extend(_check_shape_entry(entry, name, required, optional))
        outage_s = payload.get("outage_s")
        if outage_s is not None and not non_negative_number(outage_s):
            raise ValueError("outage_s must be a non-negative number")
        outage_status = payload.get("outage_status", 503)
        if not isinstance(outage_status, int) or isinstance(outage_status, bool) or not 100 <= outage_status <= 599:
            raise ValueError("outage_status must be an HTTP status code")
        with self._lock:
            self.shape_next.extend(shapes)
            if outage_s is not None:
                self.outage_until = time.monotonic() + outage_s
                self.outage_status = outage_status
            self.fail_next.extend(entries)
            self.hang_next += hang_next
            self.latency_ms = payload.get("latency_ms", self.latency_ms)
            self.region_latency_ms.update(region_latency)

    def plan(self, region: str) -> tuple[float, dict | str | None]:
        """Latency (seconds) and action for one call: a scripted entry (a fail_next, drip_next or
        huge_next one, or an outage's status), "hang", "error" or None."""
        with self._lock:
            latency_s = self.region_latency_ms.get(region, self.latency_ms) / 1000
            if time.monotonic() < self.outage_until:
                return 0.0, {"status": self.outage_status}
            for i, entry in enumerate(self.shape_next):
                if entry.get("region", region) == region:
                    return latency_s, self.shape_next.pop(i)
            for i, entry in enumerate(self.fail_next):
                if entry.get("region", region) == region:
                    return latency_s, self.fail_next.pop(i)
            if self.hang_next:
                self.hang_next -= 1
                return latency_s, "hang"
        return latency_s, self._dice.roll()

    def wait_released(self, timeout_s: float) -> None:
        with self._lock:
            release = self._release
        release.wait(timeout_s)

    def release_hung(self) -> None:
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def start(self, entry: dict) -> dict:
        with self._lock:
            self.requests.append(entry)
        return entry

    def finish(self, entry: dict) -> None:
        with self._lock:
            entry["finished"] = time.monotonic()

    def snapshot(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self.requests]

    def reset(self) -> None:
        self.release_hung()
        with self._lock:
            self._clear()


def _streamed(chunks, state: _SimulatorState, entry: dict, **headers: str) -> Response:
    """A 200 whose body is ``chunks``; the call counts as finished when the stream ends (or breaks)."""
    entry["streaming"] = True

    def body():
        try:
            yield from chunks
        finally:
            state.finish(entry)

    response = Response(body(), status=200, mimetype="application/json")
    response.headers.update(headers)
    return response


def _drip(data: bytes, interval_s: float, chunk: int, state: _SimulatorState, entry: dict) -> Response:
    def chunks():
        for i in range(0, len(data), chunk):
            yield data[i:i + chunk]
            time.sleep(interval_s)

    return _streamed(chunks(), state, entry)


def _huge(size: int, declared: bool, state: _SimulatorState, entry: dict) -> Response:
    head, tail = b'{"success": true, "response": "', b'"}'
    size = max(size, len(head) + len(tail))
    filler = size - len(head) - len(tail)

    def chunks():
        yield head
        piece, left = b"x" * _HUGE_PIECE, filler
        while left > 0:
            yield piece[:left]
            left -= min(left, _HUGE_PIECE)
        yield tail

    headers = {"Content-Length": str(size)} if declared else {}
    return _streamed(chunks(), state, entry, **headers)


def _error_response(status: int, message: str) -> Response:
    response = jsonify({"error": {"message": message, "code": status}})
    response.status_code = status
    return response


# A protocol's parser gives (region, model, prompt) from the JSON body; the caller checks the types.


_REGION_OF_ROUTER = {
    "us-east": "US", "us-central": "US", "us-west": "US",
    "eu-west": "EU", "eu-central": "EU",
    "asia-pacific": "APAC", "asia-southeast": "APAC",
}
_GO_PROMPT = re.compile(r"system\n.*?\nuser\n(?P<question>.*)\nassistant\n", re.DOTALL)


def _parse_inference(body: dict) -> tuple[Any, Any, Any]:
    region, prompt = body.get("region_preference", "US"), body.get("prompt")
    if isinstance(region, str):
        region = _REGION_OF_ROUTER.get(region, region)
    if isinstance(prompt, str) and (formatted := _GO_PROMPT.fullmatch(prompt)):
        prompt = formatted["question"]
    return region, body.get("model"), prompt


def _parse_chat(body: dict) -> tuple[Any, Any, Any]:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    prompt = users[-1].get("content") if users else None
    return request.headers.get("X-Beacon-Region", "US"), body.get("model"), prompt


def _inference_body(region: str, model: str, text: str) -> dict:
    sent = request.get_json(silent=True).get("region_preference", region)
    return {
        "success": True,
        "response": text,
        "provider_used": PROVIDER_NAME,
        "region": region,
        "model": model,
        "metadata": {"region": sent, "model": model},
    }


def _chat_body(region: str, model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-sim-" + hashlib.sha256(text.encode()).hexdigest()[:12],
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }


def make_simulator_app(
    region_behaviour: Mapping[str, str] = DEFAULT_REGION_BEHAVIOUR,
    latency_ms: float = 20,
    error_rate: float = 0.0,
    hang_rate: float = 0.0,
    seed: int | None = None,
    api_key: str | None = None,
    hang_s: float = 60.0,
) -> Flask:
    """The simulator as a Flask app. With ``api_key`` set, model calls need ``Authorization: Bearer <key>``."""
    check_behaviour(region_behaviour)
    check_latency(latency_ms)
    behaviour = dict(region_behaviour)
    state = _SimulatorState(latency_ms, FaultDice(error_rate, hang_rate, seed))
    app = Flask(__name__)
    app.extensions["beacon_simulator"] = state

    def serve(parse, render) -> Response:
        started = time.monotonic()
        body = request.get_json(silent=True)
        region, model, prompt = parse(body) if isinstance(body, dict) else (None, None, None)
        entry = state.start(
            {"region": region, "model": model, "path": request.path, "started": started, "finished": None}
        )
        try:
            if api_key is not None and request.headers.get("Authorization") != f"Bearer {api_key}":
                return _error_response(401, "missing or wrong API key")
            if not all(isinstance(v, str) for v in (region, model, prompt)):
                return _error_response(400, "request needs string model, prompt and region")
            latency_s, action = state.plan(region)
            time.sleep(latency_s)  # simulated model latency
            if action == "hang":
                state.wait_released(hang_s)
                return _error_response(504, "simulated hang released")
            if action == "error":
                return _error_response(503, "simulated service unavailable")
            if isinstance(action, dict) and action.get("kind") == "drip_next":
                data = json.dumps(render(region, model, simulate_answer(region, model, prompt, behaviour))).encode()
                return _drip(data, action["interval_ms"] / 1000, action.get("chunk_bytes") or 1, state, entry)
            if isinstance(action, dict) and action.get("kind") == "huge_next":
                return _huge(action["bytes"], bool(action.get("declared")), state, entry)
            if isinstance(action, dict):
                if "body" in action:
                    return Response(action["body"], status=action["status"], mimetype="text/plain")
                return _error_response(action["status"], f"scripted HTTP {action['status']}")
            return jsonify(render(region, model, simulate_answer(region, model, prompt, behaviour)))
        finally:
            if not entry.get("streaming"):
                state.finish(entry)

    @app.post("/inference")
    def inference() -> Response:
        return serve(_parse_inference, _inference_body)

    @app.post("/v1/chat/completions")
    def chat_completions() -> Response:
        return serve(_parse_chat, _chat_body)

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.post("/_control")
    def control() -> Response:
        try:
            state.control(request.get_json(silent=True))
        except ValueError as exc:
            return _error_response(400, str(exc))
        return jsonify({"ok": True})

    @app.get("/_requests")
    def requests_served() -> Response:
        return jsonify(state.snapshot())

    @app.post("/_reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"ok": True})

    return app


class SimulatorServer:
    """A running simulator HTTP server (a background thread). Close it, or use it as a context manager."""

    def __init__(self, server: BaseWSGIServer, state: _SimulatorState):
        self._server = server
        self._state = state
        self.host = server.server_address[0]
        self.port = server.server_port
        self.url = f"http://{self.host}:{self.port}"
        self.thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"simulator:{self.port}", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self._state.release_hung()
        self._server.shutdown()
        self._server.server_close()
        self.thread.join()

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_simulator(host: str = "127.0.0.1", port: int = 0, **opts: Any) -> SimulatorServer:
    """Start the simulator on ``host:port`` (0 = a spare port) in a threaded werkzeug server.

    ``opts`` are :func:`make_simulator_app`'s. Returns at once; ``server.thread.join()`` blocks.
    """
    app = make_simulator_app(**opts)
    server = make_server(host, port, app, threaded=True)
    return SimulatorServer(server, app.extensions["beacon_simulator"])
