"""The transparency log on real Postgres, read through the real API on loopback, proofs checked
offline (``beacon.evidence.transparency.verify_proof_document`` and the ``beacon verify-proof`` command)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import select

from app import create_app
from beacon.crypto.canonical import loads
from beacon.crypto.signing import KeyPair, sign_document
from beacon.db import database_for
from beacon.evidence import merkle, transparency
from beacon.evidence.identity import runner_identity, verify_runner_document
from beacon.execution import engine
from beacon.messaging.events import EVENTS_CHANNEL, publish_event
from beacon.models import TransparencyEntry
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.factories import seed_answered_job
from tests.support import serve_wsgi, spare_port, wait_for


@pytest.fixture
def runner_key(tmp_path) -> tuple[Path, KeyPair]:
    pair = KeyPair.generate()
    pair.save(tmp_path / "runner.key")
    return tmp_path / "runner.key", pair


@pytest.fixture
def log_env(make_settings, clean_db, redis_urls, trusted_keys_file, runner_key):
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"],
                             RATE_LIMIT_REDIS_URL=redis_urls["limits"], TRUSTED_KEYS_FILE=trusted_keys_file,
                             RUNNER_SIGNING_KEY=runner_key[0], REDIS_URL=redis_urls["broker"], LOG_LEVEL="WARNING")
    with serve_wsgi(create_app(settings)) as api:
        yield settings, database_for(clean_db), api


def append_entries(settings, db, count: int, start: int = 0) -> None:
    identity = runner_identity(settings)
    for i in range(start, start + count):
        with db.session() as session:
            transparency.append(session, identity, f"job-{i}", f"cid-{i}", f"{i:064x}", "completed")


def get(api: str, path: str, **params):
    return requests.get(f"{api}{path}", params=params, timeout=10)


def verify_with_cli(tmp_path: Path, doc: dict, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / f"proof-{random.getrandbits(32)}.json"
    path.write_text(json.dumps(doc))
    return subprocess.run([sys.executable, "-m", "beacon", "verify-proof", str(path), *args],
                          capture_output=True, text=True, timeout=60)


def test_empty_log_has_a_signed_empty_root(log_env, runner_key):
    _, _, api = log_env
    head = get(api, "/api/v1/transparency/root").json()
    assert head["tree_size"] == 0 and head["root_hash"] == merkle.EMPTY_ROOT.hex()
    verify_runner_document(head, "tree_head", runner_key[1].public_key_b64)
    assert get(api, "/api/v1/transparency/proof", index=0).status_code == 400


def test_every_inclusion_and_consistency_proof_to_40_verifies(log_env, runner_key, tmp_path):
    settings, db, api = log_env
    public_key = runner_key[1].public_key_b64
    roots = {}
    for size in range(1, 41):
        append_entries(settings, db, 1, start=size - 1)
        head = get(api, "/api/v1/transparency/root").json()
        assert head["tree_size"] == size
        verify_runner_document(head, "tree_head", public_key)
        roots[size] = head["root_hash"]
    with db.session() as session:
        leaves = list(session.scalars(select(TransparencyEntry.leaf_hash).order_by(TransparencyEntry.leaf_index)))
    for size in range(1, 41):
        assert roots[size] == merkle.root(leaves[:size]).hex()
        for index in range(size):
            proof = get(api, "/api/v1/transparency/proof", index=index, tree_size=size).json()
            assert proof["entry"]["job_id"] == f"job-{index}" and proof["root_hash"] == roots[size]
            transparency.verify_proof_document(proof, public_key)
        for first in range(size + 1):
            proof = get(api, "/api/v1/transparency/consistency", first=first, second=size).json()
            assert proof["second_root"] == roots[size]
            transparency.verify_proof_document(proof, public_key)

    inclusion = get(api, "/api/v1/transparency/proof", index=17).json()  # default tree_size: the whole log
    assert inclusion["tree_size"] == 40
    ok = verify_with_cli(tmp_path, inclusion, "--public-key", public_key)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: entry 17 is in the log of size 40"), ok.stdout + ok.stderr
    consistency = get(api, "/api/v1/transparency/consistency", first=13, second=40).json()
    ok = verify_with_cli(tmp_path, consistency, "--public-key", public_key)
    assert ok.returncode == 0 and "prefix of the log of size 40" in ok.stdout, ok.stdout + ok.stderr
    wrong_key = verify_with_cli(tmp_path, consistency, "--public-key", KeyPair.generate().public_key_b64)
    assert wrong_key.returncode == 1 and "INVALID" in wrong_key.stdout
    tampered = {**inclusion, "entry": {**inclusion["entry"], "status": "failed"}}
    bad = verify_with_cli(tmp_path, tampered)
    assert bad.returncode == 1 and "leaf_hash is not the hash of entry" in bad.stdout


def _flip(hex_hash: str) -> str:
    return ("0" if hex_hash[0] != "0" else "1") + hex_hash[1:]


def test_random_pairs_on_a_300_entry_log_and_tampering_fails(log_env, runner_key):
    settings, db, api = log_env
    public_key = runner_key[1].public_key_b64
    append_entries(settings, db, 300)
    rng = random.Random(6962)
    for _ in range(40):
        second = rng.randint(1, 300)
        first = rng.randint(0, second)
        index = rng.randrange(second)
        transparency.verify_proof_document(
            get(api, "/api/v1/transparency/proof", index=index, tree_size=second).json(), public_key)
        transparency.verify_proof_document(
            get(api, "/api/v1/transparency/consistency", first=first, second=second).json(), public_key)

    inclusion = get(api, "/api/v1/transparency/proof", index=201, tree_size=257).json()
    other_head = get(api, "/api/v1/transparency/proof", index=201, tree_size=258).json()["tree_head"]
    forged_head = sign_document({k: v for k, v in inclusion["tree_head"].items()
                                 if k not in ("signature", "public_key")}, KeyPair.generate().signing_key)
    path = inclusion["audit_path"]
    tampered_inclusions = {
        "entry": {**inclusion, "entry": {**inclusion["entry"], "bundle_cid": "cid-999"}},
        "leaf and entry": {**inclusion, "entry": {**inclusion["entry"], "job_id": "job-x"},
                           "leaf_hash": merkle.leaf_hash(b'{"job_id":"job-x"}').hex()},
        "root": {**inclusion, "root_hash": _flip(inclusion["root_hash"])},
        "path": {**inclusion, "audit_path": [path[0], _flip(path[1]), *path[2:]]},
        "short path": {**inclusion, "audit_path": path[:-1]},
        "index": {**inclusion, "leaf_index": 200},
        "head of another size": {**inclusion, "tree_head": other_head},
        "head by another key": {**inclusion, "tree_head": forged_head},
    }
    for what, doc in tampered_inclusions.items():
        with pytest.raises(ValueError):
            transparency.verify_proof_document(doc, public_key)
            pytest.fail(f"tampered {what} verified")
    with pytest.raises(ValueError, match="not by the expected key"):
        transparency.verify_proof_document({**inclusion, "tree_head": forged_head}, public_key)
    transparency.verify_proof_document({**inclusion, "tree_head": forged_head})  # math alone holds without a key

    consistency = get(api, "/api/v1/transparency/consistency", first=100, second=300).json()
    proof = consistency["proof"]
    for doc in (
        {**consistency, "proof": [_flip(proof[0]), *proof[1:]]},
        {**consistency, "first_root": _flip(consistency["first_root"])},
        {**consistency, "second_root": _flip(consistency["second_root"])},
        {**consistency, "first": 99},
        {**consistency, "first_tree_head": other_head},
    ):
        with pytest.raises(ValueError):
            transparency.verify_proof_document(doc, public_key)


def test_eight_concurrent_appenders_give_a_gapless_consistent_log(log_env, runner_key):
    settings, db, api = log_env
    per_thread, threads = 25, 8
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def appender(n: int) -> None:
        try:
            start.wait()
            identity = runner_identity(settings)
            for i in range(per_thread):
                with db.session() as session:
                    transparency.append(session, identity, f"job-{n}-{i}", f"cid-{n}-{i}", "00" * 32, "completed")
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    workers = [threading.Thread(target=appender, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not errors, errors
    total = per_thread * threads
    with db.session() as session:
        rows = list(session.scalars(select(TransparencyEntry).order_by(TransparencyEntry.leaf_index)))
        assert transparency.log_size(session) == total
    assert [row.leaf_index for row in rows] == list(range(total))
    assert sorted(row.job_id for row in rows) == sorted(f"job-{n}-{i}" for n in range(threads) for i in range(per_thread))
    leaves = [bytes(row.leaf_hash) for row in rows]
    previous = None
    for row in rows:
        head = loads(row.tree_head)
        verify_runner_document(head, "tree_head", runner_key[1].public_key_b64)
        assert head["tree_size"] == row.leaf_index + 1
        assert head["root_hash"] == merkle.root(leaves[: row.leaf_index + 1]).hex()
        assert merkle.leaf_hash(row.entry.encode()) == bytes(row.leaf_hash)
        if previous is not None:
            assert head["timestamp"] >= previous["timestamp"], "tree heads are stamped in index order"
        previous = head
    for first, second in ((1, total), (37, 101), (128, 129), (150, total)):
        doc = get(api, "/api/v1/transparency/consistency", first=first, second=second).json()
        transparency.verify_proof_document(doc, runner_key[1].public_key_b64)


@pytest.mark.parametrize("path, params, field", [
    ("/api/v1/transparency/proof", {}, "index"),
    ("/api/v1/transparency/proof", {"index": "x"}, "index"),
    ("/api/v1/transparency/proof", {"index": "-1"}, "index"),
    ("/api/v1/transparency/proof", {"index": "3"}, "index"),
    ("/api/v1/transparency/proof", {"index": "0", "tree_size": "4"}, "tree_size"),
    ("/api/v1/transparency/proof", {"index": "2", "tree_size": "2"}, "index"),
    ("/api/v1/transparency/consistency", {"first": "1"}, "second"),
    ("/api/v1/transparency/consistency", {"first": "3", "second": "2"}, "first"),
    ("/api/v1/transparency/consistency", {"first": "0", "second": "4"}, "second"),
    ("/api/v1/transparency/consistency", {"first": "1.5", "second": "2"}, "first"),
])
def test_bad_proof_requests_are_400(log_env, path, params, field):
    settings, db, api = log_env
    append_entries(settings, db, 3)
    response = get(api, path, **params)
    assert response.status_code == 400, response.text
    assert response.json()["details"]["field"] == field


def test_finalisation_appends_and_publishes_the_event(log_env, keypair):
    settings, db, api = log_env
    client = redis.Redis.from_url(settings.redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe(EVENTS_CHANNEL)
    wait_for(lambda: pubsub.get_message(timeout=0.1), what="subscription confirmed")
    job_id = seed_answered_job(db, settings, keypair, ["math_basic"])
    assert engine.finalize_job(db, settings, job_id) == "completed"

    seen = []

    def appended():
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            event = json.loads(message["data"])
            seen.append(event["type"])
            return event if event["type"] == "transparency.appended" else None
        return None

    event = wait_for(appended, what="transparency.appended event")
    pubsub.close()
    assert seen == ["job.finished", "job.completed", "bundle.stored", "transparency.appended"]  # status, then log entry
    assert event["data"]["job_id"] == job_id
    assert event["data"]["leaf_index"] == 0 and event["data"]["tree_size"] == 1
    bundle = get(api, f"/api/v1/jobs/{job_id}/bundle").json()
    assert event["data"]["bundle_cid"] == bundle["cid"]
    proof = get(api, "/api/v1/transparency/proof", index=0).json()
    assert proof["entry"]["job_id"] == job_id and proof["entry"]["bundle_cid"] == bundle["cid"]
    assert proof["entry"]["bundle_sha256"] == bundle["sha256"] and proof["entry"]["status"] == "completed"
    assert event["data"]["root_hash"] == proof["root_hash"]


def test_redis_down_does_not_block_finalisation(make_settings, clean_db, keypair, runner_key):
    settings = make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=runner_key[0],
                             REDIS_URL=f"redis://127.0.0.1:{spare_port()}/0", LOG_LEVEL="WARNING")
    db = database_for(clean_db)
    assert publish_event(settings, "transparency.appended", {"x": 1}) is False
    job_id = seed_answered_job(db, settings, keypair, ["math_basic"])
    assert engine.finalize_job(db, settings, job_id) == "completed"
    with db.session() as session:
        assert transparency.log_size(session) == 1


def test_publish_event_reaches_subscribers():
    """publish_event on its own, for the modules that reuse it."""
    from beacon.settings import Settings

    url = f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}"
    pubsub = redis.Redis.from_url(url).pubsub()
    pubsub.subscribe(EVENTS_CHANNEL)
    wait_for(lambda: pubsub.get_message(timeout=0.1), what="subscription confirmed")
    marker = random.getrandbits(64)
    assert publish_event(Settings.from_env({"REDIS_URL": url}), "test.event", {"marker": marker})

    def received():
        message = pubsub.get_message(timeout=0.2)
        return message if message and message["type"] == "message" and \
            json.loads(message["data"])["data"].get("marker") == marker else None

    event = json.loads(wait_for(received, what="test event")["data"])
    pubsub.close()
    assert event["type"] == "test.event" and event["time"].endswith("Z")
