"""Evidence end to end and its endpoints: real API, real Postgres, a real Celery worker on Redis,
providers reached over HTTP on the loopback simulator; bundle CIDs checked with Debian's
``ipfs_cid``; receipts and proofs checked by the ``beacon`` verifier commands in a subprocess.

The IPFS node is ``tests.support.LoopbackIpfsNode``, a loopback stand-in for Kubo's RPC API
(no Kubo binary installs here; it computes CIDs with ``ipfs_cid``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from sqlalchemy import text, update

from app import create_app
from beacon.crypto.canonical import loads
from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.evidence.identity import EMBEDDED_KEY_FILE, verify_runner_document
from beacon.execution import engine
from beacon.migrate import upgrade
from beacon.models import Job
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.factories import body, make_spec, seed_answered_job
from tests.stack import Stack
from tests.support import (
    LoopbackIpfsNode,
    ipfs_cid_of,
    serve_wsgi,
    wait_for,
)

QUESTIONS = ["math_basic", "tiananmen_neutral", "greatest_invention"]


def beacon_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "beacon", *args], capture_output=True, text=True, timeout=60)


class EvidenceStack(Stack):
    """The shared stack plus a loopback IPFS node and a runner key of the test's own."""

    def __init__(self, tmp: Path, pg_url: str, keypair: KeyPair):
        self.ipfs = LoopbackIpfsNode().start()
        self.runner = KeyPair.generate()
        self.runner.save(tmp / "runner.key")
        super().__init__(tmp, pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", keypair,
                         {"RUNNER_SIGNING_KEY": str(tmp / "runner.key"), "IPFS_API_URL": self.ipfs.url})
        self.start_worker()

    def get(self, path: str, **params) -> requests.Response:
        return requests.get(f"{self.api}{path}", params=params, timeout=10)

    def submit_raw(self, **overrides) -> tuple[str, bytes]:
        raw = body(make_spec(self.keypair, **overrides))
        response = requests.post(f"{self.api}/api/v1/jobs", data=raw, headers={"Content-Type": "application/json"},
                                 timeout=10)
        assert response.status_code == 202, response.text
        return response.json()["id"], raw

    def close(self) -> None:
        super().close()
        self.ipfs.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url):
    stack = EvidenceStack(tmp_path_factory.mktemp("evidence"), pg_url, KeyPair.generate())
    yield stack
    stack.close()


def test_job_end_to_end_leaves_verifiable_evidence(stack, clean_db, tmp_path):
    job_id, raw = stack.submit_raw(questions=QUESTIONS)
    view = wait_for(lambda: (v := stack.get(f"/api/v1/jobs/{job_id}", include="executions").json())["status"]
                    in ("completed", "failed") and v, timeout=60, what="job to end")
    assert view["status"] == "completed", view["status_reason"]
    identity = stack.get("/api/v1/runner/identity").json()
    assert identity["public_key"] == stack.runner.public_key_b64

    # the bundle: CID of its bytes by an independent implementation, pinned on the node
    bundle = wait_for(lambda: (b := stack.get(f"/api/v1/jobs/{job_id}/bundle").json())["pin"]["state"] == "pinned"
                      and b, what="bundle pinned")
    data = stack.get(f"/ipfs/{bundle['cid']}").content
    assert ipfs_cid_of(data) == (bundle["cid"], bundle["cid_v1"])
    assert stack.ipfs.pins == {bundle["cid"]}
    assert stack.get(f"/api/v1/transparency/bundles/{bundle['cid_v1']}").content == data
    doc = loads(data)
    verify_runner_document(doc, "evidence_bundle", identity["public_key"])
    assert doc["jobspec"] == raw.decode() and doc["job_id"] == job_id and doc["status"] == "completed"
    assert doc["analysis"] == stack.get(f"/api/v1/jobs/{job_id}/diff").json()["analysis"]

    # receipts: one per unit, served exactly as bundled, verified offline
    assert len(doc["receipts"]) == len(view["executions"]) == 9
    for execution in view["executions"]:
        receipt = stack.get(f"/api/v1/executions/{execution['id']}/receipt")
        assert receipt.status_code == 200 and loads(receipt.content) in doc["receipts"]
        assert {k: v for k, v in loads(receipt.content).items() if k in execution} == execution
    path = tmp_path / "receipt.json"
    path.write_bytes(stack.get(f"/api/v1/executions/{view['executions'][0]['id']}/receipt").content)
    verified = beacon_cli("verify", str(path), "--public-key", identity["public_key"])
    assert verified.returncode == 0 and "execution_receipt signature verifies" in verified.stdout, verified.stderr
    path.write_text(path.read_text().replace('"status":"completed"', '"status":"failed"'))
    assert beacon_cli("verify", str(path), "--public-key", identity["public_key"]).returncode == 1

    # the transparency entry and its inclusion proof
    entry = bundle["transparency"]
    proof = stack.get("/api/v1/transparency/proof", index=entry["leaf_index"]).json()
    assert proof["entry"]["job_id"] == job_id and proof["entry"]["bundle_cid"] == bundle["cid"]
    assert proof["leaf_hash"] == entry["leaf_hash"]
    proof_path = tmp_path / "proof.json"
    proof_path.write_text(json.dumps(proof))
    checked = beacon_cli("verify-proof", str(proof_path), "--public-key", identity["public_key"])
    assert checked.returncode == 0 and checked.stdout.startswith("OK: entry"), checked.stdout + checked.stderr

    # the cross-region analysis: APAC refuses the Tiananmen question (simulator behaviour)
    diff = stack.get(f"/api/v1/jobs/{job_id}/diff").json()
    tiananmen = next(q for q in diff["analysis"]["questions"] if q["question_id"] == "tiananmen_neutral")
    assert tiananmen["risk"] == "high"
    assert tiananmen["regions"]["APAC"]["classification"] == "content_refusal"
    assert any(d["kind"] == "refusal" and d["refused"] == ["APAC"] for d in tiananmen["key_differences"])
    pair = stack.get(f"/api/v1/jobs/{job_id}/diff", pair="US,EU").json()
    assert pair["pair"] == ["US", "EU"]
    text = next(d for d in pair["diffs"] if d["question_id"] == "tiananmen_neutral")["diff"]
    assert text.startswith("--- US\n+++ EU\n@@") and "\n-" in text and "\n+" in text
    alias = stack.get(f"/api/v1/executions/{job_id}/cross-region-diff", pair="US,EU").json()
    # the Go runner's path: the same document, its analysis with Go's four numbers beside ours
    go_numbers = {"bias_variance", "censorship_rate", "factual_consistency", "narrative_divergence", "recommendation"}
    assert set(alias["analysis"]) - set(pair["analysis"]) == go_numbers
    assert {k: v for k, v in alias["analysis"].items() if k not in go_numbers} == pair["analysis"]
    assert {k: v for k, v in alias.items() if k != "analysis"} == {k: v for k, v in pair.items() if k != "analysis"}


# ----------------------------------------------------------------- analysis endpoints on seeded simulator answers


@pytest.fixture
def seeded(make_settings, clean_db, keypair, tmp_path):
    KeyPair.generate().save(tmp_path / "runner.key")
    settings = make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=tmp_path / "runner.key", LOG_LEVEL="WARNING")
    db = database_for(clean_db)
    job_id = seed_answered_job(db, settings, keypair, ["math_basic", "tiananmen_neutral", "taiwan_status"],
                               models=("llama3.2-1b", "mistral-7b"))
    assert engine.finalize_job(db, settings, job_id) == "completed"
    with serve_wsgi(create_app(settings)) as api:
        yield api, job_id, db, settings


def test_analysis_shows_the_simulators_known_differences(seeded):
    api, job_id, _, _ = seeded
    doc = requests.get(f"{api}/api/v1/jobs/{job_id}/diff", timeout=10).json()
    questions = {(q["question_id"], q["model_id"]): q for q in doc["analysis"]["questions"]}
    assert len(questions) == 6
    for model in ("llama3.2-1b", "mistral-7b"):
        math = questions[("math_basic", model)]
        assert math["risk"] == "low" and math["divergence"] == 0 and math["key_differences"] == []
        for qid in ("tiananmen_neutral", "taiwan_status"):
            sensitive = questions[(qid, model)]
            assert sensitive["risk"] == "high"
            assert sensitive["regions"]["APAC"]["classification"] == "content_refusal"
            assert {d["kind"] for d in sensitive["key_differences"]} == {"refusal", "disagreement"}
            disagreement = next(d for d in sensitive["key_differences"] if d["kind"] == "disagreement")
            assert disagreement["pair"] == ["EU", "US"]  # EU's simulator answers differ materially
    assert doc["analysis"]["summary"]["regions_refused"] == ["APAC"]

    same = requests.get(f"{api}/api/v1/jobs/{job_id}/diff",
                        params={"pair": "US,EU", "question_id": "math_basic"}, timeout=10).json()
    assert [(d["model_id"], d["identical"], d["diff"]) for d in same["diffs"]] == \
        [("llama3.2-1b", True, ""), ("mistral-7b", True, "")]
    refusal = requests.get(f"{api}/api/v1/jobs/{job_id}/diff", timeout=10, params={
        "pair": "US,APAC", "question_id": "tiananmen_neutral", "model_id": "mistral-7b"}).json()
    [item] = refusal["diffs"]
    assert item["diff"].startswith("--- US\n+++ APAC\n")
    added = [line[1:] for line in item["diff"].splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert added and any("can't" in line.lower() or "cannot" in line.lower() or "unable" in line.lower()
                         for line in added), added


@pytest.mark.parametrize("params, field", [
    ({"pair": "US"}, "pair"), ({"pair": "US,US"}, "pair"), ({"pair": "US,EU,APAC"}, "pair"),
    ({"pair": "US,MARS"}, "pair"), ({"pair": ","}, "pair"),
    ({"pair": "US,EU", "question_id": "nope"}, "question_id"), ({"pair": "US,EU", "model_id": "gpt-9"}, "model_id"),
])
def test_bad_diff_requests_are_400(seeded, params, field):
    api, job_id, _, _ = seeded
    for path in (f"/api/v1/jobs/{job_id}/diff", f"/api/v1/executions/{job_id}/cross-region-diff"):
        response = requests.get(f"{api}{path}", params=params, timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "validation_error" and response.json()["details"]["field"] == field


def test_diff_of_unknown_or_unfinished_jobs(seeded, keypair):
    api, _, db, settings = seeded
    assert requests.get(f"{api}/api/v1/jobs/job-nope/diff", timeout=10).status_code == 404
    assert requests.get(f"{api}/api/v1/executions/job-nope/cross-region-diff", timeout=10).status_code == 404
    running = seed_answered_job(db, settings, keypair, ["math_basic"])
    for path in (f"/api/v1/jobs/{running}/diff", f"/api/v1/jobs/{running}/bundle"):
        response = requests.get(f"{api}{path}", timeout=10)
        assert response.status_code == 409 and response.json()["error_code"] == "invalid_state"
        assert response.json()["details"]["status"] == "running"
    with db.session() as session:
        execution_id = session.execute(text("SELECT id FROM executions WHERE job_id = :j LIMIT 1"),
                                       {"j": running}).scalar_one()
    receipt = requests.get(f"{api}/api/v1/executions/{execution_id}/receipt", timeout=10)
    assert receipt.status_code == 409 and receipt.json()["error_code"] == "invalid_state"
    assert requests.get(f"{api}/api/v1/executions/999999/receipt", timeout=10).status_code == 404


# ----------------------------------------------------------------- bundles and the gateway


@pytest.mark.parametrize("bad", ["QmXXX", "bafyINVALID", "%2e%2e", "zQm", "Qm" + "1" * 44,
                                 "BAFYBEIF7ZTNHQ65LUMVVTR4EKCWD2IFWGM3AWQ4ZFR3SRH462RWYINLB4Y"])
def test_malformed_cids_are_400(seeded, bad):
    api, _, _, _ = seeded
    for path in (f"/ipfs/{bad}", f"/api/v1/transparency/bundles/{bad}"):
        response = requests.get(f"{api}{path}", timeout=10)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "invalid_cid"


def test_path_like_cids_never_reach_a_file(seeded):
    api, _, _, _ = seeded
    for path in ("/ipfs/..%2F..%2Fbeacon.db", "/ipfs/%2e%2e%2fetc%2fpasswd", "/api/v1/transparency/bundles/..%2Fx"):
        response = requests.get(f"{api}{path}", timeout=10)
        assert response.status_code in (400, 404) and "error_code" in response.json(), response.text


def test_unknown_cid_is_404_and_tampered_blocks_are_detected(seeded):
    api, job_id, db, _ = seeded
    unknown = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"  # the empty file: never stored here
    for path in (f"/ipfs/{unknown}", f"/api/v1/transparency/bundles/{unknown}"):
        assert requests.get(f"{api}{path}", timeout=10).status_code == 404
    bundle = requests.get(f"{api}/api/v1/jobs/{job_id}/bundle", timeout=10).json()
    good = requests.get(f"{api}/ipfs/{bundle['cid']}", timeout=10)
    assert good.status_code == 200 and good.headers["Content-Type"] == "application/json"
    assert requests.get(f"{api}/ipfs/{bundle['cid_v1']}", timeout=10).content == good.content
    with db.session() as session:
        session.execute(text("UPDATE blocks SET data = overlay(data placing 'X'::bytea from 40) WHERE cid = :c"),
                        {"c": bundle["cid"]})
    for path in (f"/ipfs/{bundle['cid']}", f"/api/v1/transparency/bundles/{bundle['cid']}"):
        response = requests.get(f"{api}{path}", timeout=10)
        assert response.status_code == 500 and response.json()["error_code"] == "evidence_corrupt"


def test_refinalised_job_keeps_its_first_bundle_and_log_entry(seeded):
    """Finalisation is once; a job forced back to running (as an operator might) gets a second
    bundle and entry, and the log stays append-only."""
    api, job_id, db, settings = seeded
    first = requests.get(f"{api}/api/v1/jobs/{job_id}/bundle", timeout=10).json()
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status="running", finalizing_at=None))
    assert engine.finalize_job(db, settings, job_id) == "completed"
    second = requests.get(f"{api}/api/v1/jobs/{job_id}/bundle", timeout=10).json()
    assert second["cid"] != first["cid"] and second["transparency"]["leaf_index"] == 1
    assert requests.get(f"{api}/api/v1/transparency/bundles/{first['cid']}", timeout=10).status_code == 200
    assert requests.get(f"{api}/api/v1/transparency/root", timeout=10).json()["tree_size"] == 2


def test_embedded_default_stores_blocks_in_the_data_directory(make_settings, keypair, tmp_path):
    settings = make_settings(LOG_LEVEL="WARNING", TRUST_ENFORCE="false")
    assert settings.embedded
    upgrade(settings.database_url)
    db = database_for(settings.database_url)
    job_id = seed_answered_job(db, settings, keypair, ["math_basic", "tiananmen_neutral"])
    assert engine.finalize_job(db, settings, job_id) == "completed"
    assert (settings.data_dir / EMBEDDED_KEY_FILE).exists()
    with serve_wsgi(create_app(settings)) as api:
        bundle = requests.get(f"{api}/api/v1/jobs/{job_id}/bundle", timeout=10).json()
        data = requests.get(f"{api}/ipfs/{bundle['cid']}", timeout=10).content
        assert ipfs_cid_of(data)[0] == bundle["cid"]
        identity = requests.get(f"{api}/api/v1/runner/identity", timeout=10).json()
        verify_runner_document(loads(data), "evidence_bundle", identity["public_key"])
        proof = requests.get(f"{api}/api/v1/transparency/proof", params={"index": 0}, timeout=10).json()
        assert proof["entry"]["bundle_cid"] == bundle["cid"]
    files = [p.name for p in (settings.data_dir / "blocks").rglob("*") if p.is_file()]
    assert bundle["cid"] in files and all(name.startswith("Qm") and len(name) == 46 for name in files)
