"""Manual retries end to end: a job whose EU units failed is retried as its next generation, on a
real API, a real worker, Postgres and Redis, with the simulator served over HTTP on loopback."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from sqlalchemy import select

from beacon.crypto.canonical import loads
from beacon.crypto.signing import KeyPair, sign_document
from beacon.evidence.identity import verify_runner_document
from beacon.evidence.transparency import verify_proof_document
from beacon.execution import engine
from beacon.models import Bundle, TransparencyEntry
from beacon.timeutil import isoformat, utcnow
from tests.stack import Stack

OPERATOR = {"Authorization": "Bearer operator-secret"}
QUESTIONS = ["math_basic", "geography_basic"]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return {"OPERATOR_TOKENS": "operator-secret"}


def signed(key: KeyPair, action: str, job_id: str, **fields) -> dict:
    return sign_document({"action": action, "job_id": job_id, "nonce": uuid.uuid4().hex,
                          "timestamp": isoformat(utcnow().replace(microsecond=0)), **fields}, key.signing_key)


def post(stack: Stack, path: str, body: dict | None = None, headers: dict | None = None) -> requests.Response:
    return requests.post(f"{stack.api}{path}", json=body, headers=headers, timeout=30)


def get(stack: Stack, path: str, **params) -> dict:
    return requests.get(f"{stack.api}{path}", params=params, timeout=30).json()


def failed_eu_job(stack: Stack) -> str:
    """Three regions × two questions; both EU calls answer HTTP 400 (permanent), so 4/6 < 0.67: failed."""
    stack.control(fail_next=[{"status": 400, "region": "EU"}, {"status": 400, "region": "EU"}])
    job_id = stack.submit(questions=QUESTIONS)
    view = stack.wait_terminal(job_id)
    assert view["status"] == "failed", view["status_reason"]
    assert {u["region"] for u in view["executions"] if u["status"] == "failed"} == {"EU"}
    return job_id


def set_trust(stack: Stack, key: KeyPair, status: str) -> None:
    (stack.tmp / "trusted.json").write_text(json.dumps([{"kid": "t", "public_key": key.public_key_b64,
                                                         "status": status}]))


def test_retrying_the_failed_eu_units_starts_generation_two(fresh, keys):
    job_id = failed_eu_job(fresh)
    first = get(fresh, f"/api/v1/jobs/{job_id}/bundle")
    assert (first["generation"], first["supersedes"]) == (1, None)
    units = get(fresh, f"/api/v1/jobs/{job_id}", include="executions")["executions"]
    eu = sorted(u["id"] for u in units if u["region"] == "EU")
    us = next(u["id"] for u in units if u["region"] == "US")

    # who may retry, and what
    assert post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed").status_code == 401
    other = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", signed(KeyPair.generate(), "retry", job_id))
    assert other.status_code == 403
    completed_unit = post(fresh, f"/api/v1/executions/{us}/retry-question", headers=OPERATOR)
    assert completed_unit.status_code == 409 and completed_unit.json()["error_code"] == "invalid_state"
    assert completed_unit.json()["details"]["status"] == "completed"
    wrong_scope = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", signed(keys, "retry", job_id, execution_id=eu[0]))
    assert wrong_scope.status_code == 400 and wrong_scope.json()["error_code"] == "validation_error"
    set_trust(fresh, keys, "revoked")  # trusted at submission is not enough: the key must be trusted now
    revoked = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", signed(keys, "retry", job_id))
    assert revoked.status_code == 400 and revoked.json()["error_code"] == "trust_violation:revoked"
    cancel = post(fresh, f"/api/v1/jobs/{job_id}/cancel", signed(keys, "cancel", job_id))
    assert cancel.status_code == 400 and cancel.json()["error_code"] == "trust_violation:revoked"
    set_trust(fresh, keys, "active")

    body = signed(keys, "retry", job_id, reason="EU provider recovered")
    started = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", body)
    assert started.status_code == 200, started.text
    result = started.json()
    assert (result["status"], result["previous_status"], result["generation"]) == ("retrying", "failed", 2)
    assert sorted(result["execution_ids"]) == eu and result["units"] == 2
    replay = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", body)
    assert replay.status_code == 400 and replay.json()["error_code"] == "replay_detected"
    again = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", signed(keys, "retry", job_id))
    assert again.status_code == 409 and again.json()["error_code"] == "invalid_state"  # running, or nothing failed

    view = fresh.wait_terminal(job_id)
    assert view["status"] == "completed", view["status_reason"]
    assert view["generation"] == 2 and view["status_reason"].startswith("6/6 units succeeded")
    for unit in view["executions"]:
        if unit["region"] == "EU":  # re-run in place, the failed attempt kept
            assert unit["status"] == "completed" and unit["ran_in_generation"] == 2 and unit["attempts"] == 1
            (earlier,) = unit["history"]
            assert (earlier["generation"], earlier["status"], earlier["failure"]["code"]) == (1, "failed", "http_400")
        else:
            assert unit["ran_in_generation"] == 1 and "history" not in unit
    assert engine.finalize_job(fresh.db, fresh.settings, job_id) is None  # once per generation

    # two bundles and two log entries, the second naming the first; both verify
    key = get(fresh, "/api/v1/runner/identity")["public_key"]
    with fresh.db.session() as session:
        bundles = list(session.scalars(select(Bundle).where(Bundle.job_id == job_id).order_by(Bundle.generation)))
        entries = list(session.scalars(select(TransparencyEntry).where(TransparencyEntry.job_id == job_id)
                                       .order_by(TransparencyEntry.leaf_index)))
    assert [b.generation for b in bundles] == [1, 2] and bundles[1].supersedes == bundles[0].cid == first["cid"]
    assert [loads(e.entry)["generation"] for e in entries] == [1, 2]
    assert [e.bundle_cid for e in entries] == [b.cid for b in bundles]
    docs = []
    for bundle, entry in zip(bundles, entries):
        response = requests.get(f"{fresh.api}/api/v1/transparency/bundles/{bundle.cid}", timeout=30)
        assert response.status_code == 200  # re-checked against its CID and hash
        doc = loads(response.content)
        verify_runner_document(doc, "evidence_bundle", key)
        docs.append(doc)
        proof = get(fresh, "/api/v1/transparency/proof", index=entry.leaf_index)
        assert verify_proof_document(proof, key).startswith(f"entry {entry.leaf_index} is in the log")
    assert [d["generation"] for d in docs] == [1, 2]
    assert (docs[0]["supersedes"], docs[1]["supersedes"]) == (None, bundles[0].cid)
    assert (docs[0]["status"], docs[1]["status"]) == ("failed", "completed")
    assert {r["generation"] for r in docs[1]["receipts"]} == {2}
    eu_receipts = [r for r in docs[1]["receipts"] if r["region"] == "EU"]
    assert all(r["status"] == "completed" and r["history"][0]["status"] == "failed" for r in eu_receipts)
    assert {r["status"] for r in docs[0]["receipts"] if r["region"] == "EU"} == {"failed"}

    # reads answer the latest generation
    latest = get(fresh, f"/api/v1/jobs/{job_id}/bundle")
    assert (latest["cid"], latest["generation"], latest["supersedes"]) == (bundles[1].cid, 2, bundles[0].cid)
    proof = get(fresh, "/api/v1/transparency/proof", execution_id=eu[0])
    assert (proof["entry"]["bundle_cid"], proof["entry"]["generation"]) == (bundles[1].cid, 2)
    assert loads(requests.get(f"{fresh.api}/api/v1/executions/{eu[0]}/receipt", timeout=30).content)["generation"] == 2
    assert get(fresh, f"/api/v2/jobs/{job_id}/bias-analysis")["generation"] == 2
    assert get(fresh, f"/api/v1/jobs/{job_id}/diff")["analysis"]["summary"]["units_excluded"] == 0

    # completed now: nothing is left to retry, by token or by key
    done = post(fresh, f"/api/v1/executions/{eu[0]}/retry-question", headers=OPERATOR)
    assert done.status_code == 409 and done.json()["details"]["status"] == "completed"


def test_retry_one_question_by_operator_token(fresh):
    job_id = failed_eu_job(fresh)
    units = get(fresh, f"/api/v1/jobs/{job_id}", include="executions")["executions"]
    eu = sorted(u["id"] for u in units if u["region"] == "EU")
    running = post(fresh, f"/api/v1/executions/{eu[0]}/retry-question", headers=OPERATOR)
    assert running.status_code == 200 and running.json()["execution_ids"] == [eu[0]]
    view = fresh.wait_terminal(job_id)
    # 5/6 units now: completed in generation 2, the other EU unit still failed from generation 1
    assert (view["status"], view["generation"]) == ("completed", 2)
    by_id = {u["id"]: u for u in view["executions"]}
    assert by_id[eu[0]]["status"] == "completed" and by_id[eu[1]]["status"] == "failed"
    second = post(fresh, f"/api/v1/executions/{eu[1]}/retry-question", headers=OPERATOR)
    assert second.status_code == 200 and second.json()["generation"] == 3
    assert fresh.wait_terminal(job_id)["generation"] == 3
    with fresh.db.session() as session:
        assert session.query(Bundle).filter(Bundle.job_id == job_id).count() == 3


def test_only_finished_jobs_are_retried(fresh, keys):
    fresh.control(latency_ms=2000)
    job_id = fresh.submit(questions=["math_basic"])
    response = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", headers=OPERATOR)
    assert response.status_code == 409 and response.json()["error_code"] == "invalid_state"
    assert response.json()["details"]["status"] in ("queued", "running")
    cancel = post(fresh, f"/api/v1/jobs/{job_id}/cancel", headers=OPERATOR)
    assert cancel.status_code == 200
    after = post(fresh, f"/api/v1/jobs/{job_id}/retry-all-failed", signed(keys, "retry", job_id))
    assert after.status_code == 409 and after.json()["details"]["status"] == "cancelled"
    fresh.reset()  # release the slow calls
