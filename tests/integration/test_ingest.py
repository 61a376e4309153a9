"""POST /api/v1/jobs over real HTTP against real Postgres and Redis: every error code, nothing written."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
import requests
from sqlalchemy import func, select

from app import create_app
from beacon.crypto.signing import KeyPair, sign_document
from beacon.db import database_for
from beacon.models import IdempotencyKey, Job, Nonce, OutboxMessage
from beacon.timeutil import isoformat, utcnow
from tests.factories import body, make_spec
from tests.support import serve_wsgi, session_from, wait_fast_path

JSON = {"Content-Type": "application/json"}


def counts(url: str) -> dict[str, int]:
    with database_for(url).session() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model))
            for model in (Job, Nonce, IdempotencyKey, OutboxMessage)
        }


NOTHING = {"jobs": 0, "nonces": 0, "idempotency_keys": 0, "outbox": 0}


@pytest.fixture
def api(pg_settings):
    with serve_wsgi(create_app(pg_settings)) as base:
        yield base


def post(api: str, data: bytes, headers: dict | None = None) -> requests.Response:
    return requests.post(f"{api}/api/v1/jobs", data=data, headers=headers if headers is not None else JSON, timeout=10)


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["error_code"] == code, payload
    assert isinstance(payload["error"], str) and payload["error"]
    assert "Traceback" not in response.text
    return payload


def test_accepts_signed_job_and_writes_everything_in_one_go(api, pg_settings, keypair, redis_urls):
    spec = make_spec(keypair)
    response = post(api, body(spec), {**JSON, "Idempotency-Key": "k-1"})
    assert response.status_code == 202, response.text
    assert response.json() == {"id": spec["id"], "status": "enqueued"}
    assert counts(pg_settings.database_url) == {"jobs": 1, "nonces": 1, "idempotency_keys": 1, "outbox": 1}
    wait_fast_path(pg_settings.database_url)
    with database_for(pg_settings.database_url).session() as session:
        job = session.get(Job, spec["id"])
        assert job.status == "queued"
        assert json.loads(job.raw_body) == spec
        outbox = session.scalars(select(OutboxMessage)).one()
        assert outbox.published_at is not None and outbox.attempts == 0, "the fast path published it"
    # The run_job message is on the jobs queue of the broker.
    queued = redis.Redis.from_url(redis_urls["broker"]).lrange("jobs", 0, -1)
    assert [json.loads(m)["headers"]["argsrepr"] for m in queued] == [repr([spec["id"]])]

    fetched = requests.get(f"{api}/api/v1/jobs/{spec['id']}", timeout=10).json()
    assert fetched["id"] == spec["id"] and fetched["status"] == "queued"
    assert fetched["spec"] == spec and fetched["signature_form"] == "current"
    assert fetched["job"] == {**spec, "created_at": fetched["created_at"]}  # Go's shape: the server's time
    assert fetched["counts"] == {"units": 0, "completed": 0, "failed": 0, "timeout": 0}


def test_wrong_content_type(api, pg_settings, keypair):
    response = post(api, body(make_spec(keypair)), {"Content-Type": "text/plain"})
    assert_error(response, 415, "unsupported_media_type")
    assert counts(pg_settings.database_url) == NOTHING


def test_too_large(api, pg_settings, keypair):
    spec = make_spec(keypair)
    spec["benchmark"]["description"] = "x" * (pg_settings.max_body_bytes + 1)
    assert_error(post(api, body(spec)), 413, "payload_too_large")
    assert counts(pg_settings.database_url) == NOTHING


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b'{"a": NaN}', b""])
def test_invalid_json(api, pg_settings, raw):
    assert_error(post(api, raw), 400, "invalid_json")
    assert counts(pg_settings.database_url) == NOTHING


def test_missing_field(api, pg_settings, keypair):
    spec = make_spec(keypair)
    del spec["metadata"]["nonce"]
    payload = assert_error(post(api, body(spec)), 400, "missing_field:metadata.nonce")
    assert payload["details"]["field"] == "metadata.nonce"
    assert counts(pg_settings.database_url) == NOTHING


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda s: s.update(surprise=1), "surprise"),
        (lambda s: s["constraints"].update(timeout=10_000), "constraints.timeout"),  # seconds: 2.8 h
        (lambda s: s["constraints"].update(regions=["MARS"]), "constraints.regions"),
        (lambda s: s.update(questions=["no_such_question"]), "questions"),
        (lambda s: s["constraints"].update(min_success_rate=1.5), "constraints.min_success_rate"),
    ],
)
def test_validation_error(api, pg_settings, keypair, mutate, field):
    spec = make_spec(keypair)
    mutate(spec)
    payload = assert_error(post(api, body(spec)), 400, "validation_error")
    assert payload["details"]["field"] == field
    assert counts(pg_settings.database_url) == NOTHING


def test_too_many_units(make_settings, clean_db, redis_urls, trusted_keys_file, keypair):
    settings = make_settings(
        DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"], TRUSTED_KEYS_FILE=trusted_keys_file,
        MAX_UNITS_PER_JOB=5,
    )
    with serve_wsgi(create_app(settings)) as api:
        spec = make_spec(keypair, questions=["math_basic", "geography_basic"])
        payload = assert_error(post(api, body(spec)), 400, "validation_error")
    assert "6 units" in payload["error"]
    assert counts(clean_db) == NOTHING


def test_trust_violations(api, pg_settings, keypair, trusted_keys_file):
    stranger = KeyPair.generate()
    assert_error(post(api, body(make_spec(stranger))), 400, "trust_violation:unknown")
    now = utcnow()
    entries = [
        {"kid": "revoked", "public_key": keypair.public_key_b64, "status": "revoked"},
    ]
    trusted_keys_file.write_text(json.dumps(entries))
    assert_error(post(api, body(make_spec(keypair))), 400, "trust_violation:revoked")
    entries = [
        {"kid": "old", "public_key": keypair.public_key_b64, "status": "active",
         "not_after": isoformat(now - timedelta(days=1))},
        {"kid": "future", "public_key": stranger.public_key_b64, "status": "active",
         "not_before": isoformat(now + timedelta(days=1))},
    ]
    trusted_keys_file.write_text(json.dumps(entries, indent=1))
    assert_error(post(api, body(make_spec(keypair))), 400, "trust_violation:expired")
    assert_error(post(api, body(make_spec(stranger))), 400, "trust_violation:not_yet_valid")
    assert counts(pg_settings.database_url) == NOTHING


def test_trust_enforced_without_file_rejects_everything(make_settings, clean_db, redis_urls, keypair):
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"])
    with serve_wsgi(create_app(settings)) as api:
        assert_error(post(api, body(make_spec(keypair))), 400, "trust_violation:unknown")
    assert counts(clean_db) == NOTHING


def test_trust_not_enforced_still_checks_signature(make_settings, clean_db, redis_urls, keypair):
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"], TRUST_ENFORCE="false")
    with serve_wsgi(create_app(settings)) as api:
        spec = make_spec(keypair)
        spec["benchmark"]["name"] = "tampered"
        assert_error(post(api, body(spec)), 400, "signature_mismatch")
        assert post(api, body(make_spec(keypair))).status_code == 202
    assert counts(clean_db)["jobs"] == 1


@pytest.mark.parametrize(
    "stamp, reason",
    [
        (lambda: isoformat(utcnow() - timedelta(minutes=11)), "too_old"),
        (lambda: isoformat(utcnow() + timedelta(minutes=6)), "too_far_in_future"),
        (lambda: "yesterday", "format_invalid"),
        (lambda: "2025-08-30T15:32:00", "format_invalid"),
    ],
)
def test_timestamp_window(api, pg_settings, keypair, stamp, reason):
    spec = make_spec(keypair)
    spec["metadata"]["timestamp"] = stamp()
    spec = sign_document(spec, keypair.signing_key)
    payload = assert_error(post(api, body(spec)), 400, "timestamp_invalid")
    assert payload["details"]["reason"] == reason
    assert counts(pg_settings.database_url) == NOTHING


def test_signature_mismatch(api, pg_settings, keypair):
    spec = make_spec(keypair)
    spec["constraints"]["regions"] = ["US"]
    assert_error(post(api, body(spec)), 400, "signature_mismatch")
    spec = make_spec(keypair)
    spec["signature"] = "not base64!"
    assert_error(post(api, body(spec)), 400, "signature_mismatch")
    assert counts(pg_settings.database_url) == NOTHING


def test_rate_limit_after_signature_failures(api, pg_settings, keypair):
    def bad() -> bytes:
        spec = make_spec(keypair)
        spec["benchmark"]["name"] = "tampered"
        return body(spec)

    for _ in range(pg_settings.rate_limit_key_per_minute):
        assert_error(post(api, bad()), 400, "signature_mismatch")
    payload = assert_error(post(api, bad()), 429, "rate_limit_exceeded")
    assert payload["details"]["limit"] == "key"
    # The limit holds even for a correctly signed submission with that key.
    assert_error(post(api, body(make_spec(keypair))), 429, "rate_limit_exceeded")
    assert counts(pg_settings.database_url) == NOTHING


def test_forged_failures_with_a_public_key_never_lock_its_owner_out(api, pg_settings, keypair):
    """Public keys are public (GET /api/v1/jobs lists them): failures count per (key, address), so an
    attacker spending the key's failure budget from another address blocks only that address."""
    attacker, owner = session_from("127.0.0.2"), session_from("127.0.0.1")

    def forged() -> bytes:
        spec = make_spec(keypair)
        spec["benchmark"]["name"] = "tampered"
        return body(spec)

    def send(session, data: bytes) -> requests.Response:
        return session.post(f"{api}/api/v1/jobs", data=data, headers=JSON, timeout=10)

    for _ in range(pg_settings.rate_limit_key_per_minute):
        assert_error(send(attacker, forged()), 400, "signature_mismatch")
    payload = assert_error(send(attacker, forged()), 429, "rate_limit_exceeded")
    assert payload["details"]["limit"] == "key"
    assert send(owner, body(make_spec(keypair))).status_code == 202, "the owner, from its own address, still submits"
    assert_error(send(attacker, body(make_spec(keypair))), 429, "rate_limit_exceeded")  # that pair stays blocked
    for _ in range(pg_settings.rate_limit_key_per_minute):  # the owner's own mistakes do count against the owner
        assert_error(send(owner, forged()), 400, "signature_mismatch")
    assert_error(send(owner, body(make_spec(keypair))), 429, "rate_limit_exceeded")


def test_rate_limit_per_ip(api, pg_settings, trusted_keys_file):
    keys = [KeyPair.generate() for _ in range(pg_settings.rate_limit_ip_per_minute + 1)]
    trusted_keys_file.write_text(
        json.dumps([{"kid": f"k{i}", "public_key": k.public_key_b64, "status": "active"} for i, k in enumerate(keys)])
    )
    for key in keys[:-1]:  # one failure per key: only the IP counter reaches its limit
        spec = make_spec(key)
        spec["benchmark"]["name"] = "tampered"
        assert_error(post(api, body(spec)), 400, "signature_mismatch")
    payload = assert_error(post(api, body(make_spec(keys[-1]))), 429, "rate_limit_exceeded")
    assert payload["details"]["limit"] == "ip"


def test_idempotency_key(api, pg_settings, keypair):
    spec = make_spec(keypair)
    headers = {**JSON, "Idempotency-Key": "same"}
    assert post(api, body(spec), headers).status_code == 202
    again = post(api, body(spec), headers)
    assert again.status_code == 200
    assert again.json() == {"id": spec["id"], "idempotent": True}
    other = make_spec(keypair)
    assert_error(post(api, body(other), headers), 409, "idempotency_key_reused")
    assert counts(pg_settings.database_url) == {"jobs": 1, "nonces": 1, "idempotency_keys": 1, "outbox": 1}


def test_replay_detected(api, pg_settings, keypair):
    spec = make_spec(keypair)
    assert post(api, body(spec)).status_code == 202
    replay = dict(spec, id="another-id")
    replay = sign_document(replay, keypair.signing_key)  # same nonce, new id, valid signature
    assert_error(post(api, body(replay)), 400, "replay_detected")
    assert counts(pg_settings.database_url)["jobs"] == 1


def test_job_exists_is_never_overwritten(api, pg_settings, keypair):
    spec = make_spec(keypair)
    assert post(api, body(spec)).status_code == 202
    second = make_spec(keypair)
    second["id"] = spec["id"]
    second["benchmark"]["name"] = "overwrite attempt"
    second = sign_document(second, keypair.signing_key)
    assert_error(post(api, body(second)), 409, "job_exists")
    assert counts(pg_settings.database_url) == {"jobs": 1, "nonces": 1, "idempotency_keys": 0, "outbox": 1}
    with database_for(pg_settings.database_url).session() as session:
        assert session.get(Job, spec["id"]).spec["benchmark"]["name"] == "Who are you?"


def test_concurrent_duplicates_create_one_job(api, pg_settings, keypair):
    from concurrent.futures import ThreadPoolExecutor

    spec = make_spec(keypair)
    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: post(api, body(spec)), range(8)))
    assert statuses.count(202) == 1
    assert set(statuses) == {200, 202}, statuses  # the same signed content answers with its one job
    assert counts(pg_settings.database_url) == {"jobs": 1, "nonces": 1, "idempotency_keys": 0, "outbox": 1}


def test_database_unreachable_is_503(make_settings, redis_urls, trusted_keys_file, keypair):
    from tests.support import spare_port

    settings = make_settings(
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{spare_port()}/nowhere",
        CELERY_BROKER_URL=redis_urls["broker"],
        TRUSTED_KEYS_FILE=trusted_keys_file,
    )
    with serve_wsgi(create_app(settings)) as api:
        response = post(api, body(make_spec(keypair)))
        assert_error(response, 503, "service_unavailable")
        assert_error(requests.get(f"{api}/api/v1/jobs/x", timeout=10), 503, "service_unavailable")


def test_reads_list_newest_first_with_cursor(api, pg_settings, keypair):
    ids = []
    for _ in range(5):
        spec = make_spec(keypair)
        assert post(api, body(spec)).status_code == 202
        ids.append(spec["id"])
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = requests.get(f"{api}/api/v1/jobs", params=params, timeout=10).json()
        seen += [job["id"] for job in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert_error(requests.get(f"{api}/api/v1/jobs", params={"limit": 201}, timeout=10), 400, "validation_error")
    assert_error(requests.get(f"{api}/api/v1/jobs", params={"cursor": "!!"}, timeout=10), 400, "validation_error")
    assert_error(requests.get(f"{api}/api/v1/jobs/nope", timeout=10), 404, "not_found")
