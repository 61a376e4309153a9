"""The hostile-input catalogue: every case against the real app (Postgres, Redis) or the real CLI.

Each case names what it sends and the status and ``error_code`` it must get; no input may answer
500 (except the one case that provokes a server fault on purpose) and every error carries the
envelope ``{"error", "error_code", "details"?}``. With ``BEACON_REPORT_DIR`` set, every case
appends ``{case, expected, got}`` as one JSON line to ``$BEACON_REPORT_DIR/hostile.jsonl``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
import requests

from app import create_app
from beacon.crypto.signing import KeyPair, sign_document
from beacon.settings import Settings
from beacon.timeutil import isoformat, utcnow
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB, REDIS_LIMITS_DB
from tests.factories import body, make_spec
from tests.support import scratch_database, serve_wsgi

JSON = {"Content-Type": "application/json"}
TOKENS = {"viewer": "view-hostile", "operator": "op-hostile", "admin": "admin-hostile"}
S = 10**9


# --------------------------------------------------------------------------- the report


@pytest.fixture(scope="module", autouse=True)
def fresh_report() -> None:
    """Each run of the catalogue writes the whole report anew (scripts/test sets BEACON_REPORT_DIR)."""
    folder = os.environ.get("BEACON_REPORT_DIR")
    if folder:
        (Path(folder) / "hostile.jsonl").unlink(missing_ok=True)


def record(case: str, expected: dict[str, Any], got: dict[str, Any]) -> None:
    folder = os.environ.get("BEACON_REPORT_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    with (Path(folder) / "hostile.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"case": case, "expected": expected, "got": got}) + "\n")


# --------------------------------------------------------------------------- the app under attack


@dataclass
class Target:
    base: str
    broken_base: str  # the same app on a database without tables: every read is a server fault
    keypair: KeyPair
    job_id: str  # a queued job nobody runs

    def post(self, path: str, data: bytes | str | None = None, headers: dict | None = None,
             role: str | None = None) -> requests.Response:
        headers = dict(JSON if headers is None else headers)
        if role:
            headers["Authorization"] = f"Bearer {TOKENS[role]}"
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        return requests.post(f"{self.base}{path}", data=data, headers=headers, timeout=20)

    def get(self, path: str, **params: str) -> requests.Response:
        return requests.get(f"{self.base}{path}", params=params or None, timeout=20)

    def submit(self, data: bytes | str, headers: dict | None = None) -> requests.Response:
        return self.post("/api/v1/jobs", data, headers)

    def signed(self, **overrides: Any) -> bytes:
        return body(make_spec(self.keypair, **overrides))

    def signed_with(self, mutate: Callable[[dict], None]) -> bytes:
        spec = make_spec(self.keypair)
        mutate(spec)
        return body(sign_document(spec, self.keypair.signing_key))

    def new_job(self) -> str:
        spec = make_spec(self.keypair)
        response = self.submit(body(spec))
        assert response.status_code == 202, response.text
        return spec["id"]

    def cancel(self, data: bytes | str | None, role: str | None = "operator", job_id: str | None = None):
        return self.post(f"/api/v1/jobs/{job_id or self.job_id}/cancel", data, role=role)

    def signed_cancel(self, job_id: str, **fields: Any) -> bytes:
        return body(sign_document({"action": "cancel", "job_id": job_id, "nonce": uuid.uuid4().hex,
                                   "timestamp": isoformat(utcnow()), **fields}, self.keypair.signing_key))

    def cancel_and_read_reason(self, data: Callable[[str], bytes | str | None], role: str | None) -> requests.Response:
        """Cancel a new job; on success the job must say the expected reason (in ``X-Test-Reason``)."""
        job_id = self.new_job()
        response = self.cancel(data(job_id), role=role, job_id=job_id)
        if response.ok:
            response.headers["X-Test-Reason"] = self.get(f"/api/v1/jobs/{job_id}").json()["status_reason"]
        return response


@pytest.fixture(scope="module")
def target(pg_url, tmp_path_factory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp("hostile")
    keypair = KeyPair.generate()
    keys_file = tmp / "trusted-keys.json"
    keys_file.write_text(json.dumps([{"kid": "hostile", "public_key": keypair.public_key_b64, "status": "active"}]))
    broker, limits = f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", f"{REDIS_BASE_URL}/{REDIS_LIMITS_DB}"
    for url in (broker, limits):
        redis.Redis.from_url(url).flushdb()
    env = {
        "BEACON_DATA_DIR": str(tmp / "data"), "CELERY_BROKER_URL": broker, "RATE_LIMIT_REDIS_URL": limits,
        "TRUSTED_KEYS_FILE": str(keys_file), "VIEWER_TOKENS": TOKENS["viewer"],
        "OPERATOR_TOKENS": TOKENS["operator"], "ADMIN_TOKENS": TOKENS["admin"],
        "RATE_LIMIT_IP_PER_MINUTE": "1000", "RATE_LIMIT_KEY_PER_MINUTE": "1000", "LOG_LEVEL": "WARNING",
    }
    with scratch_database("beacon_hostile_broken", migrate=False) as broken_url:
        good = create_app(Settings.from_env({**env, "DATABASE_URL": pg_url}))
        broken = create_app(Settings.from_env({**env, "DATABASE_URL": broken_url}))
        with serve_wsgi(good) as base, serve_wsgi(broken) as broken_base:
            found = Target(base, broken_base, keypair, "")
            found.job_id = found.new_job()
            yield found


# --------------------------------------------------------------------------- helpers for the cases


def cursor(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def spliced(raw: bytes, old: str, new: str) -> bytes:
    """The signed body with one piece of its text replaced (e.g. a key written twice)."""
    assert old.encode() in raw, old
    return raw.replace(old.encode(), new.encode(), 1)


def set_in(path: tuple, value: Any) -> Callable[[dict], None]:
    def mutate(spec: dict) -> None:
        node = spec
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return mutate


def details(**expected: Any) -> Callable[[dict, requests.Response], None]:
    def check(payload: dict, _response: requests.Response) -> None:
        for key, value in expected.items():
            assert payload.get("details", {}).get(key) == value, payload

    return check


def message_has(text: str) -> Callable[[dict, requests.Response], None]:
    def check(payload: dict, _response: requests.Response) -> None:
        assert text in payload["error"], payload

    return check


def allow_header(*methods: str) -> Callable[[dict, requests.Response], None]:
    def check(_payload: dict, response: requests.Response) -> None:
        allowed = {m.strip() for m in response.headers.get("Allow", "").split(",")}
        assert set(methods) <= allowed, response.headers

    return check


def reason_is(expected: str) -> Callable[[dict, requests.Response], None]:
    def check(_payload: dict, response: requests.Response) -> None:
        assert response.headers["X-Test-Reason"] == expected

    return check


def only_request_id(payload: dict, response: requests.Response) -> None:
    assert set(payload) == {"error", "error_code", "details"}, payload
    assert payload["details"] == {"request_id": response.headers["X-Request-ID"]}, payload
    assert payload["error"] == "internal server error", payload


class Case:
    """One hostile input: what to send, the status and error_code it must get (None: a success, for the
    boundary that must still pass), and any further checks of the answer."""

    def __init__(self, name: str, status: int, code: str | None, send: Callable[[Target], requests.Response],
                 *checks: Callable[[dict, requests.Response], None]):
        self.name, self.status, self.code, self.send, self.checks = name, status, code, send, checks


def deep(levels: int, opener: str = "[", closer: str = "]") -> str:
    return opener * levels + closer * levels


DEEP_OBJECT = '{"a":' * 65 + "1" + "}" * 65
LONG = "x" * 2000

CASES = [
    # ---- 1. the raw JSON body: depth, duplicate keys, NUL and lone surrogates, bad UTF-8 / JSON
    Case("deep-array-2000-unclosed", 400, "invalid_json", lambda t: t.submit("[" * 2000), details(reason="depth")),
    Case("deep-array-2000-closed", 400, "invalid_json", lambda t: t.submit(deep(2000)), details(reason="depth")),
    Case("deep-object-65", 400, "invalid_json", lambda t: t.submit(DEEP_OBJECT), details(reason="depth")),
    Case("depth-65-inside-an-object", 400, "invalid_json",
         lambda t: t.submit('{"benchmark": ' + deep(64) + "}"), details(reason="depth")),
    Case("depth-64-is-not-too-deep", 400, "validation_error", lambda t: t.submit(deep(64))),
    Case("brackets-inside-strings-are-not-depth", 400, "validation_error",
         lambda t: t.submit(json.dumps({"surprise": "[" * 5000 + '\\"{' * 100}))),
    Case("duplicate-top-level-key", 400, "duplicate_key",
         lambda t: t.submit(spliced(t.signed(), '"version": "1.0"', '"version": "1.0", "version": "2.0"')),
         details(field="version")),
    Case("duplicate-nested-key", 400, "duplicate_key",
         lambda t: t.submit(spliced(t.signed(), '"metadata": {', '"metadata": {"nonce": "first", ')),
         details(field="metadata.nonce")),
    Case("duplicate-key-in-array-item", 400, "duplicate_key",
         lambda t: t.submit('{"models": [{"id": "a"}, {"id": "b", "id": "c"}]}'), details(field="models[1].id")),
    Case("nul-in-string", 400, "validation_error",
         lambda t: t.submit(spliced(t.signed(), '"name": "Who are you?"', '"name": "Who\\u0000"')),
         details(field="benchmark.name")),
    Case("nul-in-key", 400, "validation_error", lambda t: t.submit('{"metadata": {"a\\u0000b": 1}}'),
         details(field="metadata.a\x00b")),
    Case("lone-high-surrogate", 400, "validation_error",
         lambda t: t.submit('{"questions": ["ok", "\\ud800"]}'), details(field="questions[1]")),
    Case("lone-low-surrogate", 400, "validation_error", lambda t: t.submit('{"id": "x\\udc00y"}'),
         details(field="id")),
    Case("reversed-surrogate-pair", 400, "validation_error", lambda t: t.submit('{"id": "\\ude00\\ud83d"}')),
    Case("invalid-utf8", 400, "invalid_json", lambda t: t.submit(b'{"id": "\xff"}')),
    Case("utf8-encoded-surrogate", 400, "invalid_json", lambda t: t.submit(b'{"id": "\xed\xa0\x80"}')),
    Case("utf16-body", 400, "invalid_json", lambda t: t.submit('{"id": "x"}'.encode("utf-16"))),
    Case("raw-nul-byte", 400, "invalid_json", lambda t: t.submit(b'{"id": "a\x00b"}')),
    Case("truncated", 400, "invalid_json", lambda t: t.submit('{"id": ')),
    Case("trailing-garbage", 400, "invalid_json", lambda t: t.submit("{} {}")),
    Case("infinity", 400, "invalid_json", lambda t: t.submit('{"runs": Infinity}')),
    Case("number-overflowing-a-double", 400, "invalid_json", lambda t: t.submit('{"runs": 1e400}')),
    Case("integer-of-5000-digits", 400, "invalid_json", lambda t: t.submit('{"runs": ' + "9" * 5000 + "}")),
    Case("empty-body", 400, "invalid_json", lambda t: t.submit(b"")),
    # ---- 2. timestamps that overflow
    Case("timestamp-year-9999-west-of-utc", 400, "timestamp_invalid",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "timestamp"), "9999-12-31T23:59:59-01:00"))),
         details(reason="format_invalid")),
    Case("timestamp-year-1-east-of-utc", 400, "timestamp_invalid",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "timestamp"), "0001-01-01T00:00:00+01:00"))),
         details(reason="format_invalid")),
    Case("timestamp-year-1-utc", 400, "timestamp_invalid",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "timestamp"), "0001-01-01T00:00:00Z"))),
         details(reason="too_old")),
    Case("timestamp-huge", 400, "timestamp_invalid",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "timestamp"), "2025-01-01T" + "9" * 5000))),
         details(reason="format_invalid")),
    # ---- 3. ids: reads answer 404, ingest answers 400, cursors answer 400
    Case("get-job-nul", 404, "not_found", lambda t: t.get("/api/v1/jobs/%00")),
    Case("get-job-nul-inside", 404, "not_found", lambda t: t.get("/api/v1/jobs/a%00b", include="executions")),
    Case("get-job-129-chars", 404, "not_found", lambda t: t.get("/api/v1/jobs/" + "a" * 129)),
    Case("get-job-non-ascii", 404, "not_found", lambda t: t.get("/api/v1/jobs/j%C3%B6b")),
    Case("get-job-bad-percent-escape", 404, "not_found", lambda t: t.get("/api/v1/jobs/%ff%fe")),
    Case("job-executions-nul", 404, "not_found", lambda t: t.get("/api/v1/jobs/%00/executions")),
    Case("job-diff-nul", 404, "not_found", lambda t: t.get("/api/v1/jobs/%00/diff", pair="US,EU")),
    Case("go-cross-region-diff-nul", 404, "not_found", lambda t: t.get("/api/v1/executions/%00/cross-region-diff")),
    Case("job-bundle-nul", 404, "not_found", lambda t: t.get("/api/v1/jobs/%00/bundle")),
    Case("cancel-nul", 404, "not_found", lambda t: t.post("/api/v1/jobs/%00/cancel", role="operator")),
    Case("admin-republish-nul", 404, "not_found", lambda t: t.post("/admin/jobs/%00/republish", role="operator")),
    Case("admin-emergency-stop-nul", 404, "not_found",
         lambda t: t.post("/admin/jobs/%00/emergency-stop", '{"reason": "r"}', role="admin")),
    Case("execution-2-pow-63", 404, "not_found", lambda t: t.get("/api/v1/executions/9223372036854775808")),
    Case("execution-huge", 404, "not_found", lambda t: t.get("/api/v1/executions/" + "9" * 5000)),
    Case("execution-zero", 404, "not_found", lambda t: t.get("/api/v1/executions/0")),
    Case("execution-negative", 404, "not_found", lambda t: t.get("/api/v1/executions/-1")),
    Case("execution-plus-sign", 404, "not_found", lambda t: t.get("/api/v1/executions/+1")),
    Case("execution-underscore", 404, "not_found", lambda t: t.get("/api/v1/executions/1_0")),
    Case("execution-arabic-digits", 404, "not_found", lambda t: t.get("/api/v1/executions/%D9%A1")),
    Case("execution-nul", 404, "not_found", lambda t: t.get("/api/v1/executions/%00")),
    Case("receipt-2-pow-63", 404, "not_found", lambda t: t.get("/api/v1/executions/9223372036854775808/receipt")),
    Case("jobs-cursor-id-not-a-string", 400, "validation_error",
         lambda t: t.get("/api/v1/jobs", cursor=cursor(["2025-01-01T00:00:00Z", 5]))),
    Case("jobs-cursor-id-with-nul", 400, "validation_error",
         lambda t: t.get("/api/v1/jobs", cursor=cursor(["2025-01-01T00:00:00Z", "a\x00"]))),
    Case("jobs-cursor-time-overflows", 400, "validation_error",
         lambda t: t.get("/api/v1/jobs", cursor=cursor(["9999-12-31T23:59:59-01:00", "a"]))),
    Case("jobs-cursor-time-not-a-string", 400, "validation_error",
         lambda t: t.get("/api/v1/jobs", cursor=cursor([5, "a"]))),
    Case("jobs-cursor-object", 400, "validation_error", lambda t: t.get("/api/v1/jobs", cursor=cursor({"a": 1, "b": 2}))),
    Case("jobs-cursor-deep", 400, "validation_error", lambda t: t.get("/api/v1/jobs", cursor=cursor(b"[" * 2500))),
    Case("jobs-cursor-garbage-base64", 400, "validation_error", lambda t: t.get("/api/v1/jobs", cursor="%%%%")),
    Case("jobs-cursor-non-ascii", 400, "validation_error", lambda t: t.get("/api/v1/jobs", cursor="é")),
    Case("jobs-cursor-not-utf8", 400, "validation_error", lambda t: t.get("/api/v1/jobs", cursor=cursor(b"\xff\xfe"))),
    Case("executions-cursor-2-pow-63", 400, "validation_error",
         lambda t: t.get("/api/v1/executions", cursor="9223372036854775808")),
    Case("executions-cursor-superscript", 400, "validation_error", lambda t: t.get("/api/v1/executions", cursor="²")),
    Case("executions-cursor-negative", 400, "validation_error", lambda t: t.get("/api/v1/executions", cursor="-1")),
    Case("ingest-id-with-slash", 400, "validation_error", lambda t: t.submit(t.signed(id="job/../etc")),
         details(field="id")),
    Case("ingest-id-with-space", 400, "validation_error", lambda t: t.submit(t.signed(id="job 1")), details(field="id")),
    Case("ingest-id-non-ascii", 400, "validation_error", lambda t: t.submit(t.signed(id="jöb")), details(field="id")),
    Case("ingest-id-129-chars", 400, "validation_error", lambda t: t.submit(t.signed(id="a" * 129)),
         details(field="id")),
    Case("ingest-id-128-chars-accepted", 202, None, lambda t: t.submit(t.signed(id=f"{uuid.uuid4().hex}{'a' * 96}"))),
    Case("idempotency-key-with-nul", 400, "validation_error",
         lambda t: t.submit(t.signed(), {**JSON, "Idempotency-Key": "k\x00"}), details(field="Idempotency-Key")),
    # ---- 4. server faults, methods
    Case("server-fault-is-internal-error", 500, "internal_error",
         lambda t: requests.get(f"{t.broken_base}/api/v1/jobs/job-1", timeout=20), only_request_id),
    Case("server-fault-on-list", 500, "internal_error",
         lambda t: requests.get(f"{t.broken_base}/api/v1/jobs", timeout=20), only_request_id),
    Case("method-not-allowed-questions", 405, "method_not_allowed", lambda t: t.post("/api/v1/questions", "{}"),
         allow_header("GET")),
    Case("method-not-allowed-jobs", 405, "method_not_allowed",
         lambda t: requests.delete(f"{t.base}/api/v1/jobs", timeout=20), allow_header("GET", "POST")),
    Case("unknown-route", 404, "not_found", lambda t: t.get("/api/v1/nowhere")),
    # ---- 5. cancel bodies with a token
    Case("cancel-body-json-string", 400, "validation_error", lambda t: t.cancel('"please"')),
    Case("cancel-body-json-array", 400, "validation_error", lambda t: t.cancel('["please"]')),
    Case("cancel-body-number", 400, "validation_error", lambda t: t.cancel("5")),
    Case("cancel-reason-object", 400, "validation_error", lambda t: t.cancel('{"reason": {"why": "x"}}'),
         details(field="reason")),
    Case("cancel-reason-number", 400, "validation_error", lambda t: t.cancel('{"reason": 5}'),
         details(field="reason")),
    Case("cancel-reason-nul", 400, "validation_error", lambda t: t.cancel('{"reason": "a\\u0000b"}'),
         details(field="reason")),
    Case("cancel-reason-1001-chars", 400, "validation_error", lambda t: t.cancel(json.dumps({"reason": "r" * 1001})),
         details(field="reason")),
    Case("cancel-reason-1000-chars-accepted", 200, None,
         lambda t: t.cancel(json.dumps({"reason": "r" * 1000}), job_id=t.new_job())),
    Case("cancel-token-without-body-accepted", 200, None, lambda t: t.cancel_and_read_reason(lambda _: None, "operator"),
         reason_is("cancelled by role")),
    Case("cancel-signed-with-reason-accepted", 200, None,
         lambda t: t.cancel_and_read_reason(lambda job: t.signed_cancel(job, reason="wrong model"), None),
         reason_is("wrong model")),
    Case("cancel-without-credentials", 401, "unauthorized", lambda t: t.cancel(None, role=None)),
    Case("cancel-viewer-token", 403, "forbidden", lambda t: t.cancel('{"reason": "x"}', role="viewer")),
    Case("cancel-signed-by-another-key", 403, "forbidden",
         lambda t: t.cancel(body(sign_document({"action": "cancel", "job_id": t.job_id, "nonce": uuid.uuid4().hex,
                                                "timestamp": isoformat(utcnow())},
                                               KeyPair.generate().signing_key)), role=None)),
    Case("cancel-deep-body-with-token", 400, "invalid_json", lambda t: t.cancel("[" * 5000), details(reason="depth")),
    Case("cancel-duplicate-key", 400, "duplicate_key", lambda t: t.cancel('{"reason": "a", "reason": "b"}')),
    Case("cancel-deep-body-without-token", 400, "invalid_json", lambda t: t.cancel("[" * 5000, role=None)),
    Case("cancel-array-without-token", 401, "unauthorized", lambda t: t.cancel("[1]", role=None)),
    Case("cancel-signed-reason-object", 400, "validation_error",
         lambda t: t.cancel(t.signed_cancel(t.job_id, reason={"x": 1}), role=None), details(field="reason")),
    Case("cancel-signed-reason-1001-chars", 400, "validation_error",
         lambda t: t.cancel(t.signed_cancel(t.job_id, reason="r" * 1001), role=None), details(field="reason")),
    # ---- admin bodies are read only after authorisation
    Case("admin-stop-deep-body-without-token", 401, "unauthorized",
         lambda t: t.post(f"/admin/jobs/{t.job_id}/emergency-stop", "[" * 5000)),
    Case("admin-stop-deep-body", 400, "invalid_json",
         lambda t: t.post(f"/admin/jobs/{t.job_id}/emergency-stop", "[" * 5000, role="admin"), details(reason="depth")),
    Case("admin-stop-duplicate-reason", 400, "duplicate_key",
         lambda t: t.post(f"/admin/jobs/{t.job_id}/emergency-stop", '{"reason": "a", "reason": "b"}', role="admin")),
    Case("admin-stop-reason-nul", 400, "validation_error",
         lambda t: t.post(f"/admin/jobs/{t.job_id}/emergency-stop", '{"reason": "\\u0000"}', role="admin")),
    Case("admin-stuck-superscript-minutes", 400, "validation_error",
         lambda t: requests.get(f"{t.base}/admin/jobs/stuck", params={"minutes": "²"}, timeout=20,
                                headers={"Authorization": f"Bearer {TOKENS['admin']}"})),
    Case("transparency-proof-superscript-index", 400, "validation_error",
         lambda t: t.get("/api/v1/transparency/proof", index="²")),
    Case("transparency-consistency-huge", 400, "validation_error",
         lambda t: t.get("/api/v1/transparency/consistency", first="9" * 5000, second="9" * 5000)),
    Case("ipfs-nul", 400, "invalid_cid", lambda t: t.get("/ipfs/%00")),
    Case("transparency-bundle-nul", 400, "invalid_cid", lambda t: t.get("/api/v1/transparency/bundles/%00")),
    # ---- 6. JobSpec limits
    Case("model-id-257-chars", 400, "validation_error", lambda t: t.submit(t.signed(models=["m" * 257])),
         details(field="models[0]")),
    Case("model-object-id-257-chars", 400, "validation_error",
         lambda t: t.submit(t.signed(models=[{"id": "m" * 257}])), details(field="models[0].id")),
    Case("model-id-256-chars-accepted", 202, None, lambda t: t.submit(t.signed(models=["m" * 256]))),
    Case("models-65", 400, "validation_error", lambda t: t.submit(t.signed(models=[f"m{i}" for i in range(65)])),
         details(field="models")),
    Case("metadata-models-65", 400, "validation_error",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "models"), [f"m{i}" for i in range(65)]))),
         details(field="metadata.models")),
    Case("questions-257", 400, "validation_error",
         lambda t: t.submit(t.signed(questions=[f"q{i}" for i in range(257)])), details(field="questions"),
         message_has("at most 256")),
    Case("regions-17", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": [f"R{i}" for i in range(17)]})),
         details(field="constraints.regions"), message_has("at most 16")),
    Case("model-regions-17", 400, "validation_error",
         lambda t: t.submit(t.signed(models=[{"id": "m", "regions": [f"R{i}" for i in range(17)]}])),
         details(field="models[0].regions")),
    Case("model-region-65-chars", 400, "validation_error",
         lambda t: t.submit(t.signed(models=[{"id": "m", "regions": ["R" * 65]}])), details(field="models[0].regions")),
    Case("provider-timeout-1e30", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "provider_timeout": 1e30})),
         details(field="constraints.provider_timeout")),
    Case("provider-timeout-10-pow-30", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "provider_timeout": 10**30})),
         details(field="constraints.provider_timeout")),
    Case("provider-timeout-half-second", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "provider_timeout": 0.5})),
         details(field="constraints.provider_timeout")),
    Case("provider-timeout-60min-accepted", 202, None,
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "min_regions": 1, "timeout": 3600 * S,
                                                  "provider_timeout": 3600 * S}))),
    Case("provider-timeout-over-timeout", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "timeout": 60 * S, "provider_timeout": 61 * S})),
         details(field="constraints.provider_timeout")),
    Case("timeout-10-pow-30", 400, "validation_error",
         lambda t: t.submit(t.signed(constraints={"regions": ["US"], "timeout": 10**30})),
         details(field="constraints.timeout")),
    Case("public-key-too-long", 400, "validation_error", lambda t: t.submit(t.signed().replace(b'"public_key": "', b'"public_key": "' + b"A" * 100)),
         details(field="public_key")),
    Case("signature-too-long", 400, "validation_error", lambda t: t.submit(t.signed().replace(b'"signature": "', b'"signature": "' + b"A" * 100)),
         details(field="signature")),
    Case("nonce-513-chars", 400, "validation_error",
         lambda t: t.submit(t.signed_with(set_in(("metadata", "nonce"), "n" * 513))), details(field="metadata.nonce")),
    Case("emoji-pair-accepted", 202, None,
         lambda t: t.submit(t.signed_with(set_in(("benchmark", "description"), "\U0001F600 ok")))),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input(target: Target, case: Case):
    response = case.send(target)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    got_code = payload.get("error_code") if isinstance(payload, dict) else None
    expected = {"status": case.status, "error_code": case.code}
    record(case.name, expected, {"status": response.status_code, "error_code": got_code})
    assert "Traceback" not in response.text
    assert (response.status_code, got_code) == (case.status, case.code), response.text[:2000]
    if case.code is not None:
        assert isinstance(payload["error"], str) and payload["error"]
        assert set(payload) <= {"error", "error_code", "details"}, payload
    for check in case.checks:
        check(payload, response)


# --------------------------------------------------------------------------- 7. configuration fails fast

CONFIG_VARS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "RATE_LIMIT_REDIS_URL", "PORT", "LOG_LEVEL",
               "BEACON_ENV", "FLY_APP_NAME", "IPFS_API_URL")

CONFIG_CASES = [  # name, variable, value, command
    ("port-not-a-number", "PORT", "abc", ["api"]),
    ("port-out-of-range", "PORT", "70000", ["api"]),
    ("redis-url-garbage", "REDIS_URL", "garbage", ["worker"]),
    ("redis-url-http", "REDIS_URL", "http://127.0.0.1:6379", ["beat"]),
    ("database-url-garbage", "DATABASE_URL", "garbage", ["migrate"]),
    ("database-url-mysql", "DATABASE_URL", "mysql://u@h/db", ["relay"]),
    ("broker-url-garbage", "CELERY_BROKER_URL", "garbage", ["flower"]),
    ("broker-url-ftp", "CELERY_BROKER_URL", "ftp://127.0.0.1", ["worker"]),
    ("rate-limit-redis-url-garbage", "RATE_LIMIT_REDIS_URL", "redis//x", ["api"]),
    ("log-level-garbage", "LOG_LEVEL", "garbage", ["demo"]),
    ("log-level-garbage-keygen", "LOG_LEVEL", "garbage", ["keygen", "--out", "key"]),
    ("log-level-garbage-verify", "LOG_LEVEL", "garbage", ["verify", "nothing.json"]),
]


def beacon_command() -> list[str]:
    script = shutil.which("beacon", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "beacon"]


@pytest.mark.parametrize("name, variable, value, command", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_configuration_fails_fast(tmp_path, name, variable, value, command):
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    env.update({"BEACON_DATA_DIR": str(tmp_path / "data"), variable: value})
    done = subprocess.run(beacon_command() + command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    lines = done.stderr.strip().splitlines()
    got_variable = lines[0].split(":", 2)[1].strip() if len(lines) == 1 and lines[0].count(":") >= 2 else None
    record(f"config-{name}", {"status": 2, "error_code": variable},
           {"status": done.returncode, "error_code": got_variable})
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith(f"Error: {variable}: "), done.stderr[-2000:]
    assert len(lines[0]) > len(f"Error: {variable}: ") + 5
    assert not (tmp_path / "data").exists(), "nothing may start before the configuration is checked"


RUNNER_KEY_CASES = [  # name, command, extra environment (a key path relative to the scratch directory)
    ("runner-key-unset-in-production-worker", ["worker"], {"BEACON_ENV": "production"}),
    ("runner-key-unset-on-fly-api", ["api"], {"FLY_APP_NAME": "beacon-runner"}),
    ("runner-key-missing-file-worker", ["worker"], {"BEACON_ENV": "production", "RUNNER_SIGNING_KEY": "absent.key"}),
    ("runner-key-garbled-file-api", ["api"], {"RUNNER_SIGNING_KEY": "garbled.key"}),
]


@pytest.mark.parametrize("name, command, extra", RUNNER_KEY_CASES, ids=[c[0] for c in RUNNER_KEY_CASES])
def test_the_roles_that_sign_refuse_to_start_without_a_usable_runner_key(tmp_path, name, command, extra):
    (tmp_path / "garbled.key").write_text("not a key\n")
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS + ("RUNNER_SIGNING_KEY",)}
    env.update({"BEACON_DATA_DIR": str(tmp_path / "data"), "CELERY_BROKER_URL": "memory://", **extra})
    done = subprocess.run(beacon_command() + command, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    lines = done.stderr.strip().splitlines()
    record(f"config-{name}", {"status": 2, "error_code": "RUNNER_SIGNING_KEY"},
           {"status": done.returncode, "error_code": lines[-1].split(":", 2)[1].strip() if lines else None})
    assert done.returncode == 2, done.stderr[-2000:]
    assert lines[-1].startswith("Error: RUNNER_SIGNING_KEY: "), done.stderr[-2000:]
    assert not (tmp_path / "data" / "runner-signing-key").exists()
