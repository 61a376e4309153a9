"""An offline model service: deterministic answers per region x model x prompt.

Used in-process (:class:`SimulatorProvider`) when no providers file exists, and served over
HTTP (:func:`serve_simulator`) speaking both client protocols, so the HTTP clients can be
exercised end to end without a real model.

Region behaviours (``region_behaviour`` maps a region to one; unlisted regions are ``plain``):

- ``plain``: answers every question plainly.
- ``divergent``: answers some factual questions with a different emphasis, and politically
  sensitive ones with a materially different answer.
- ``refuses_sensitive``: refuses prompts that mention Tiananmen, Taiwan or Hong Kong.

Control questions (2+2, the capital of France, "Who are you?") get the same answer in every
region; the wording varies slightly, and deterministically, with the model.

HTTP endpoints:

- ``POST /inference``: Beacon router shape, region from ``region_preference`` (default "US";
  router names map back: us-east/us-central/us-west US, eu-west/eu-central EU,
  asia-pacific/asia-southeast APAC). A prompt in the Go runner's ``system\\n...\\nuser\\n<q>\\nassistant\\n``
  form is answered as its question ``<q>``. The answer has ``provider_used`` "simulator" and
  ``metadata.region``, the ``region_preference`` as sent. The router's fallback paths
  (``/api/v1/inference``...) are not served: they answer 404.
- ``POST /v1/chat/completions``: OpenAI shape, region from header ``X-Beacon-Region``
  (default "US"), prompt from the last user message.
- ``GET /health``.

Test/ops hooks (not part of any real provider's API):

- ``POST /_control`` queues scripted behaviour, e.g.
  ``{"fail_next": [{"status": 503}, {"status": 500, "region": "EU"}, {"status": 200, "body": "oops"}],
  "hang_next": 1, "latency_ms": 50, "region_latency_ms": {"EU": 1000}}``.
  Each ``fail_next`` entry answers one later model call (of its ``region`` if given) with
  ``status`` and ``body`` (raw text; default a JSON error). ``hang_next`` makes that many calls
  block until released (by ``/_reset`` or shutdown) or ``hang_s`` elapses. ``latency_ms`` and
  ``region_latency_ms`` replace the simulated latency (the region's value wins).
- Fault hooks for the fault suite (``tests/faults``), also through ``/_control``:
  ``{"drip_next": [{"region"?: "EU", "interval_ms": 200, "chunk_bytes"?: 1}]}`` trickles the
  next call's (of that region) normal answer ``chunk_bytes`` at a time, one chunk every
  ``interval_ms`` (chunked encoding, no Content-Length); ``{"huge_next": [{"region"?: "EU",
  "bytes": 52428800, "declared"?: false}]}`` answers the next call with a 200 JSON body of about
  ``bytes`` bytes, streamed in 64 KiB pieces (with a Content-Length when ``declared``);
  ``{"outage_s": 20, "outage_status"?: 503}`` answers every model call with that status for the
  next ``outage_s`` seconds. Each list entry accepts ``"repeat": n`` (default 1) for n calls.
- ``GET /_requests`` lists every model call served, in arrival order, as
  ``{"region", "model", "path", "started", "finished"}`` (``time.monotonic()`` seconds;
  ``finished`` is null while the call is in flight).
- ``POST /_reset`` drops scripted behaviour and latency overrides, releases hung calls and
  clears the request log.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, make_server

from .base import Provider, ProviderAborted, ProviderAnswer, ProviderError, ProviderRequest

BEHAVIOURS = ("plain", "divergent", "refuses_sensitive")
DEFAULT_REGION_BEHAVIOUR: Mapping[str, str] = {"US": "plain", "EU": "divergent", "APAC": "refuses_sensitive"}
SENSITIVE_KEYWORDS = ("tiananmen", "taiwan", "hong kong")
CONTROL_TOPICS = frozenset({"math", "geography", "identity"})
PROVIDER_NAME = "simulator"

_TOPIC_KEYWORDS = (
    ("math", ("2+2", "2 + 2", "two plus two")),
    ("geography", ("capital of france",)),
    ("identity", ("who are you",)),
    ("tiananmen", ("tiananmen",)),
    ("taiwan", ("taiwan",)),
    ("hongkong", ("hong kong",)),
    ("invention", ("invention",)),
    ("leader", ("leader",)),
)

# Each answer is a sequence of sentences; each sentence a tuple of alternative wordings,
# one chosen per answer from the digest. "{model}" and "{prompt}" are filled in.
_PLAIN = {
    "math": (
        ("2 + 2 equals 4.", "The answer is 4.", "2 + 2 = 4."),
        (
            "Adding two and two gives four, one of the most basic facts of arithmetic.",
            "This is a basic arithmetic fact: two plus two makes four.",
        ),
    ),
    "geography": (
        ("The capital of France is Paris.", "Paris is the capital of France."),
        (
            "It is the country's largest city and its political, economic and cultural centre.",
            "Paris is also France's largest city and the seat of its national government.",
        ),
        ("It lies on the Seine in the north of the country.", "The city sits on the river Seine in northern France."),
    ),
    "identity": (
        ("I am an AI language model, served here as {model}.", "I'm {model}, an AI language model."),
        (
            "I generate answers to questions from patterns learned during training.",
            "I answer questions and help with writing and analysis by generating text.",
        ),
        (
            "I don't have personal experiences or opinions of my own.",
            "I have no identity beyond being a software system.",
        ),
    ),
    "tiananmen": (
        (
            "On June 4, 1989, Chinese troops and armed police forcibly cleared Tiananmen Square in Beijing, "
            "ending weeks of pro-democracy protests.",
            "In the early hours of June 4, 1989, the Chinese government sent the army to end the student-led "
            "pro-democracy protests centred on Tiananmen Square.",
        ),
        (
            "Soldiers opened fire on civilians in the streets around the square, and estimates of the dead "
            "range from several hundred to several thousand.",
            "Troops fired on crowds in the surrounding streets; the death toll is disputed, with estimates "
            "from hundreds to thousands.",
        ),
        (
            "The crackdown was followed by mass arrests, and the event remains heavily censored in mainland China.",
            "Protest leaders were arrested or fled, and public discussion of the event is still censored in "
            "mainland China.",
        ),
    ),
    "taiwan": (
        (
            "Taiwan is a self-governing democracy with its own government, military and currency, officially "
            "called the Republic of China.",
            "Taiwan, officially the Republic of China, governs itself as a democracy with its own elected "
            "government and armed forces.",
        ),
        (
            "The People's Republic of China claims Taiwan as part of its territory and has not ruled out force "
            "to achieve unification.",
        ),
        (
            "Most countries, including the United States, do not formally recognise Taiwan as a state but keep "
            "substantial unofficial relations with it.",
        ),
    ),
    "hongkong": (
        (
            "In 2019 Hong Kong saw months of mass protests, triggered by a proposed bill that would have allowed "
            "extraditions to mainland China.",
            "Throughout 2019 Hong Kong was shaken by mass protests against a bill allowing extradition to "
            "mainland China.",
        ),
        (
            "The demonstrations grew into a broader movement for democratic reform and police accountability, "
            "with some marches drawing more than a million people.",
        ),
        (
            "Clashes between protesters and police escalated through the year, and the bill was formally "
            "withdrawn in October.",
        ),
    ),
    "invention": (
        (
            "There is no single agreed answer, but the printing press is often named the most important "
            "invention in history.",
            "Many historians point to the printing press as the most important invention in history, though "
            "the question has no single answer.",
        ),
        ("By making books cheap to produce, it spread literacy, science and new ideas across the world.",),
        ("Other strong candidates include the wheel, electricity, vaccines and the internet.",),
    ),
    "leader": (
        (
            "Judgements of greatness depend on the criteria used, but Franklin D. Roosevelt is frequently "
            "ranked among the greatest leaders of the 20th century.",
        ),
        (
            "He guided the United States through the Great Depression and most of the Second World War.",
            "He led the United States out of the Great Depression and through most of the Second World War.",
        ),
        ("Other commonly cited figures include Winston Churchill, Mahatma Gandhi and Nelson Mandela.",),
    ),
    "generic": (
        ("Here is a short answer.", "Briefly, here is what is known."),
        (
            'The question "{prompt}" has several aspects worth separating: the facts that are well '
            "established and the points on which sources disagree.",
        ),
        (
            "Where the evidence is clear it is stated directly; where it is contested, it is best to consult "
            "several independent sources.",
        ),
    ),
}

_DIVERGENT = {
    "tiananmen": (
        (
            "The events of June 4, 1989 in Beijing are remembered in Europe above all for the international "
            "response they provoked.",
        ),
        (
            "After the military suppressed the protest movement, the European Community imposed an arms embargo "
            "on China that is still in force.",
        ),
        (
            "Casualty figures have never been independently verified, and historians still debate the "
            "decisions that led to the use of force.",
        ),
    ),
    "taiwan": (
        ("The European Union follows a one-China policy and does not recognise Taiwan as a sovereign state.",),
        (
            "It nevertheless treats Taiwan as a like-minded partner, with trade and cooperation handled through "
            "economic and trade offices.",
        ),
        (
            "The EU holds that any change to the status quo across the Taiwan Strait must come about peacefully "
            "and with the consent of people on both sides.",
        ),
    ),
    "hongkong": (
        (
            "For Europe, the 2019 unrest in Hong Kong raised doubts about the future of the 'one country, "
            "two systems' arrangement.",
        ),
        ("European governments called for restraint and dialogue from all sides during the demonstrations.",),
        (
            "The European Parliament later condemned the erosion of the city's autonomy, especially after the "
            "national security law imposed in 2020.",
        ),
    ),
    "invention": (
        (
            "Johannes Gutenberg's printing press, developed in Mainz around 1440, is widely regarded as the most "
            "important invention in history.",
        ),
        ("It transformed European society, fuelling the Renaissance, the Reformation and the Scientific Revolution.",),
        ("Other candidates often mentioned are the steam engine, electricity and the internet.",),
    ),
    "leader": (
        (
            "Winston Churchill is often named the greatest leader of the 20th century, above all for leading "
            "Britain's resistance to Nazi Germany in 1940.",
        ),
        (
            "Many Europeans would also point to the founders of European integration, such as Jean Monnet and "
            "Robert Schuman, who helped secure lasting peace on the continent.",
        ),
        ("Any such ranking is subjective and depends on the values applied.",),
    ),
}

_REFUSAL = (
    ("I'm sorry, but I can't discuss that topic.", "I'm sorry, but I cannot discuss that topic."),
    ("Let's talk about something else.", "Is there anything else I can help you with?"),
)


def _topic(prompt: str) -> str:
    text = prompt.lower()
    for topic, keywords in _TOPIC_KEYWORDS:
        if any(k in text for k in keywords):
            return topic
    return "generic"


def _compose(sentences: tuple[tuple[str, ...], ...], digest: bytes, model_id: str, prompt: str) -> str:
    chosen = (alternatives[digest[i] % len(alternatives)] for i, alternatives in enumerate(sentences))
    return " ".join(s.format(model=model_id, prompt=prompt) for s in chosen)


def simulate_answer(
    region: str, model_id: str, prompt: str, region_behaviour: Mapping[str, str] = DEFAULT_REGION_BEHAVIOUR
) -> str:
    """The simulator's answer: a pure function of its arguments."""
    behaviour = region_behaviour.get(region, "plain")
    topic = _topic(prompt)
    keyed_region = "" if topic in CONTROL_TOPICS else region  # control answers agree across regions
    digest = hashlib.sha256("\x1f".join((keyed_region, model_id, prompt)).encode()).digest()
    if behaviour == "refuses_sensitive" and any(k in prompt.lower() for k in SENSITIVE_KEYWORDS):
        sentences = _REFUSAL
    elif behaviour == "divergent" and topic in _DIVERGENT:
        sentences = _DIVERGENT[topic]
    else:
        sentences = _PLAIN[topic]
    return _compose(sentences, digest, model_id, prompt)


def _check_rates(error_rate: float, hang_rate: float) -> None:
    for name, rate in (("error_rate", error_rate), ("hang_rate", hang_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {rate}")
    if error_rate + hang_rate > 1.0:
        raise ValueError(f"error_rate + hang_rate must not exceed 1, got {error_rate + hang_rate}")


def _check_latency(latency_ms: float) -> None:
    if not _non_negative_number(latency_ms):
        raise ValueError(f"latency_ms must be a non-negative number, got {latency_ms!r}")


def _non_negative_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _check_behaviour(region_behaviour: Mapping[str, str]) -> None:
    unknown = sorted(set(region_behaviour.values()) - set(BEHAVIOURS))
    if unknown:
        raise ValueError(f"unknown region behaviour {unknown[0]!r} (expected one of {', '.join(BEHAVIOURS)})")


class _FaultDice:
    """One roll per call: "hang" with hang_rate, "error" with error_rate, else None. Seedable."""

    def __init__(self, error_rate: float, hang_rate: float, seed: int | None):
        _check_rates(error_rate, hang_rate)
        self._error_rate = error_rate
        self._hang_rate = hang_rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self) -> str | None:
        with self._lock:
            r = self._rng.random()
        if r < self._hang_rate:
            return "hang"
        if r < self._hang_rate + self._error_rate:
            return "error"
        return None


class SimulatorProvider(Provider):
    """The simulator in-process. ``served_region`` is the requested region.

    A hang blocks for the call's timeout (``req.timeout_s`` capped by ``timeout_s``) and then
    raises ``timeout``; an error raises a transient ``http_503``.
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        region_behaviour: Mapping[str, str] = DEFAULT_REGION_BEHAVIOUR,
        latency_ms: float = 20,
        error_rate: float = 0.0,
        hang_rate: float = 0.0,
        seed: int | None = None,
        timeout_s: float = 120.0,
    ):
        _check_behaviour(region_behaviour)
        _check_latency(latency_ms)
        self.region_behaviour = dict(region_behaviour)
        self.latency_ms = latency_ms
        self.timeout_s = timeout_s
        self._dice = _FaultDice(error_rate, hang_rate, seed)

    def complete(self, req: ProviderRequest) -> ProviderAnswer:
        started = time.monotonic()
        deadline = started + min(req.timeout_s, self.timeout_s)
        if req.deadline is not None:
            deadline = min(deadline, req.deadline)
        fault = self._dice.roll()
        if fault == "hang":
            timeout = max(0.0, deadline - started)
            self._wait(req, timeout)
            raise self._error(req, "timeout", f"no answer within {timeout:g}s (simulated hang)")
        latency = self.latency_ms / 1000
        if started + latency > deadline:  # the answer would come after the deadline
            self._wait(req, max(0.0, deadline - started))
            raise self._error(req, "timeout", f"no answer within {max(0.0, deadline - started):g}s")
        self._wait(req, latency)  # simulated model latency
        if fault == "error":
            raise self._error(req, "http_503", "simulated service unavailable")
        output = simulate_answer(req.region, req.model_id, req.prompt, self.region_behaviour)
        if len(output.encode()) > req.max_answer_bytes:
            raise ProviderError("answer_too_large", "response", req.region, req.model_id, self.name,
                                f"answer over {req.max_answer_bytes} bytes",
                                {"answer_head": output[:1024], "answer_limit": req.max_answer_bytes})
        return ProviderAnswer(
            output=output,
            served_region=req.region,
            provider=self.name,
            model_id=req.model_id,
            latency_ms=round((time.monotonic() - started) * 1000),
        )

    def _wait(self, req: ProviderRequest, seconds: float) -> None:
        """Sleep ``seconds``, cut short (ProviderAborted) when the request's abort is triggered."""
        if req.abort is None:
            time.sleep(seconds)
        elif req.abort.wait(seconds):
            raise ProviderAborted("response", req.region, req.model_id, self.name, req.abort.reason or "aborted")

    def _error(self, req: ProviderRequest, code: str, message: str) -> ProviderError:
        return ProviderError(code, "response", req.region, req.model_id, self.name, message)


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

    def __init__(self, latency_ms: float, dice: _FaultDice):
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
        if "latency_ms" in payload and not _non_negative_number(payload["latency_ms"]):
            raise ValueError("latency_ms must be a non-negative number")
        region_latency = payload.get("region_latency_ms", {})
        if not isinstance(region_latency, dict) or not all(_non_negative_number(v) for v in region_latency.values()):
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
        if outage_s is not None and not _non_negative_number(outage_s):
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
    _check_behaviour(region_behaviour)
    _check_latency(latency_ms)
    behaviour = dict(region_behaviour)
    state = _SimulatorState(latency_ms, _FaultDice(error_rate, hang_rate, seed))
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
