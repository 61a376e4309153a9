"""The offline model simulator (``answers``: what it says; ``provider``: in-process; ``server``: over HTTP).

An offline model service: deterministic answers per region x model x prompt.

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

from .answers import BEHAVIOURS, DEFAULT_REGION_BEHAVIOUR, simulate_answer
from .provider import SimulatorProvider
from .server import SimulatorServer, make_simulator_app, serve_simulator

__all__ = ["BEHAVIOURS", "DEFAULT_REGION_BEHAVIOUR", "SimulatorProvider", "SimulatorServer", "make_simulator_app",
           "serve_simulator", "simulate_answer"]
