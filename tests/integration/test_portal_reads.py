"""The portal's read calls, as the portal makes them: ``tests/js/portal-reads.mjs`` runs the portal's
own fetch helpers and page transforms (ported from its source) in Node.js against a real API with a
real worker, Postgres and Redis, after real jobs finished. Every call must answer and every
transform must find real data (not its built-in fallback numbers). Beside it, the new routes'
shapes are checked from Python, and the hybrid router's fields are followed from a real loopback
router through the engine into the receipt and the bundle.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from beacon.crypto.canonical import loads
from beacon.db import database_for
from beacon.evidence.transparency import verify_proof_document
from beacon.execution import engine
from beacon.execution.analysis import Thresholds
from beacon.execution.bias import job_bias_analysis, score_answer
from beacon.execution.providers import ProviderRegistry, load_provider_configs
from beacon.models import Execution, Job
from beacon.timeutil import utcnow
from tests.conftest import REDIS_BASE_URL, REDIS_BROKER_DB
from tests.factories import make_spec
from tests.integration.test_hybrid_router import RecordingRouter, ok
from tests.stack import Stack
from tests.support import spare_port

SCRIPT = Path(__file__).resolve().parents[1] / "js" / "portal-reads.mjs"
QUESTIONS = ["tiananmen_neutral", "math_basic", "taiwan_status"]
TIANANMEN = "What happened at Tiananmen Square on June 4, 1989?"


@pytest.fixture(scope="module")
def finished(tmp_path_factory, pg_url):
    """A stack with two finished jobs: three regions × three questions, and a one-region job."""
    from beacon.crypto.signing import KeyPair

    key = KeyPair.generate()
    stack = Stack(tmp_path_factory.mktemp("reads"), pg_url, f"{REDIS_BASE_URL}/{REDIS_BROKER_DB}", key,
                  extra_env={"VIEWER_TOKENS": "viewer-secret", "OPERATOR_TOKENS": "operator-secret"})
    stack.start_worker()
    with database_for(pg_url).engine.begin() as conn:  # this module's jobs only
        from sqlalchemy import text

        from beacon.models import Base
        conn.execute(text(f"TRUNCATE {', '.join(t.name for t in Base.metadata.sorted_tables)} RESTART IDENTITY CASCADE"))
    job_id = stack.submit(questions=QUESTIONS)
    single = stack.submit(questions=["math_basic"], constraints={"regions": ["US"], "min_regions": 1})
    for ident in (job_id, single):
        assert stack.wait_terminal(ident, timeout=120)["status"] == "completed"
    yield stack, job_id, single
    stack.close()


def api(stack: Stack, path: str, **params) -> requests.Response:
    return requests.get(f"{stack.api}{path}", params=params, timeout=30)


def run_portal(stack: Stack, job_id: str, execution_id: int) -> dict:
    node = shutil.which("node")
    assert node, "node is needed for the portal client tests"
    args = {"base": stack.api, "job_id": job_id, "execution_id": execution_id, "model_id": "llama3.2-1b",
            "question_id": "tiananmen-neutral", "question": TIANANMEN,
            "unreachable": f"http://127.0.0.1:{spare_port()}"}
    done = subprocess.run([node, str(SCRIPT), json.dumps(args)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_portal_reads_a_finished_job(finished):
    stack, job_id, single = finished
    units = api(stack, f"/api/v1/jobs/{job_id}", include="executions").json()["executions"]
    us_tiananmen = next(u for u in units if u["region"] == "US" and u["question_id"] == "tiananmen_neutral")
    report = run_portal(stack, job_id, us_tiananmen["id"])
    failed = {name: call for name, call in report.items() if not call["ok"]}
    assert not failed, failed
    got = {name: call["result"] for name, call in report.items()}

    categories = got["questions"]["categories"]
    assert categories and all(items for items in categories.values())
    assert "tiananmen_neutral" in {q["question_id"] for items in categories.values() for q in items}

    listed = {j["id"]: j for j in got["jobs"]["jobs"]}
    assert {job_id, single} <= set(listed) and listed[job_id]["created_at"] and listed[job_id]["benchmark"]["name"]

    job = got["job"]  # getJob flattens {job, executions, status}
    assert job["id"] == job_id and job["status"] == "completed" and len(job["executions"]) == 9
    assert len(got["job_latest"]["executions"]) == 1
    assert len(got["job_page"]["executions"]) == 2

    health = got["health"]
    assert {"database", "redis", "broker", "ipfs", "overall"} <= set(health)
    assert health["database"] == "healthy" and health["overall"] == "ok"

    assert {e["id"] for e in got["executions"]} >= {u["id"] for u in units}
    details = got["execution"]
    assert details["id"] == us_tiananmen["id"] and details["output"] and details["receipt"]["signature"]
    assert details["receipt"]["bias_score"] == details["bias_score"] == got["receipt"]["bias_score"]

    regions = got["regions"]["regions"]
    assert set(regions) == {"US", "EU", "APAC"}
    assert all(r["status"] == "completed" and len(r["executions"]) == 3 and r["duration_ms"] is not None
               for r in regions.values())

    assert got["create_diff"]["job_id"] == job_id
    diff = got["cross_region_diff"]
    assert diff["source"] == f"runner:/executions/{job_id}/cross-region-diff"
    transformed = diff["transformed"]
    model = next(m for m in transformed["models"] if m["model_id"] == "llama3.2-1b")
    assert {r["region_code"] for r in model["regions"]} == {"US", "EU", "APAC"}
    assert all(r["response"] != "No response available" and r["provider_id"] != "unknown" for r in model["regions"])

    bias = got["bias_analysis"]
    v2 = bias["raw"]
    assert v2["job_id"] == v2["cross_region_execution_id"] == job_id
    # the diff page's numbers are the v2 analysis's, not the transform's fallbacks (23, 15, 87, 31)
    assert transformed["metrics"] == {k: int(v2["analysis"][k] * 100 // 1) for k in (
        "bias_variance", "censorship_rate", "factual_consistency", "narrative_divergence")}
    apac = next(r for r in model["regions"] if r["region_code"] == "APAC")
    apac_score = next(u for u in units if u["region"] == "APAC" and u["question_id"] == "tiananmen_neutral")["bias_score"]
    assert apac["censorship_level"] == ("high" if apac_score["censorship_score"] > 0.3 else "low") == "high"

    assert set(v2["region_scores"]) == {"us_east", "eu_west", "asia_pacific"}
    assert set(bias["heat_map"]) == {"US", "EU", "ASIA"}
    assert bias["grid"]["metrics"]["Censorship Rate"] != "N/A" and bias["grid"]["risks"]
    assert bias["grid"]["regions"]["asia pacific"]["censorship"] == "Detected"
    assert v2["analysis"]["summary"] and v2["analysis"]["recommendation"].endswith("RISK")

    per_model = got["model_region_diff"]
    assert per_model is not None and per_model["model_id"] == "llama3.2-1b"
    assert [r["region_code"] for r in per_model["regions"]] == ["US", "EU", "APAC"]
    assert all(r["response"] for r in per_model["regions"])
    assert per_model["key_differences"] and per_model["risk_level"] == "high"
    assert next(r for r in per_model["regions"] if r["region_code"] == "APAC")["censorship_detected"] is True

    assert [d["job_id"] for d in got["diffs"]] == [job_id]  # the one-region job is no diff
    assert got["proof"]["entry"]["job_id"] == job_id
    verify_proof_document(got["proof"], api(stack, "/api/v1/runner/identity").json()["public_key"])
    assert got["root"]["tree_size"] == 2


def test_the_v2_numbers_are_the_recorded_answers(finished):
    stack, job_id, _ = finished
    units = api(stack, f"/api/v1/jobs/{job_id}", include="executions").json()["executions"]
    for unit in units:  # each answer's score was computed when it was recorded, and is served as stored
        assert unit["bias_score"] == score_answer(unit["output"], unit["classification"])
        served = api(stack, f"/api/v1/executions/{unit['id']}/bias-score").json()
        assert {k: v for k, v in served.items() if k in unit["bias_score"]} == unit["bias_score"]
        assert served["execution_id"] == unit["id"]
    expected = job_bias_analysis(units, Thresholds(*stack.settings.analysis_thresholds))
    v2 = api(stack, f"/api/v2/jobs/{job_id}/bias-analysis").json()
    assert (v2["analysis"], v2["region_scores"]) == (expected["analysis"], expected["region_scores"])
    assert v2["generation"] == 1 and v2["created_at"] == api(stack, f"/api/v1/jobs/{job_id}").json()["finished_at"]


def test_read_routes_shapes(finished):
    stack, job_id, single = finished
    questions = api(stack, "/api/v1/questions").json()
    assert len(questions["questions"]) == sum(len(v) for v in questions["categories"].values())

    page = api(stack, f"/api/v1/jobs/{job_id}", include="all", exec_limit=4, exec_offset=8).json()
    assert len(page["executions"]) == 1 and page["executions_page"] == {"limit": 4, "offset": 8, "total": 9}
    everything = api(stack, f"/api/v1/jobs/{job_id}", include="executions").json()
    assert len(everything["executions"]) == 9 and "executions_page" not in everything
    latest = api(stack, f"/api/v1/jobs/{job_id}", include="latest").json()["executions"][0]
    assert latest["completed_at"] == max(u["completed_at"] for u in everything["executions"])
    assert api(stack, f"/api/v1/jobs/{job_id}", include="all", exec_limit=0).status_code == 400

    first = api(stack, "/api/v1/executions", limit=4).json()
    second = api(stack, "/api/v1/executions", limit=4, offset=4).json()
    eight = [e["id"] for e in api(stack, "/api/v1/executions", limit=8).json()["executions"]]
    assert first["total"] == second["total"] == 10 and second["offset"] == 4
    assert [e["id"] for e in first["executions"]] + [e["id"] for e in second["executions"]] == eight
    assert api(stack, "/api/v1/executions", offset="x").status_code == 400
    assert api(stack, "/api/v1/executions", offset=1, cursor=first["next_cursor"]).status_code == 400

    every = api(stack, f"/api/v1/jobs/{job_id}/executions/all").json()["executions"]
    assert len(every) == 9 and all(e["has_receipt"] for e in every)
    assert [e["id"] for e in every] == sorted((e["id"] for e in every), reverse=True)

    one = every[0]["id"]
    scoped = api(stack, f"/api/v1/executions/{one}/cross-region").json()
    unit = next(e for e in every if e["id"] == one)
    assert scoped["execution_id"] == one
    assert {(r["model_id"], r["question_id"]) for r in scoped["region_results"]} == {(unit["model_id"], unit["question_id"])}
    assert scoped["cross_region_execution"]["total_regions"] == 3
    whole = api(stack, f"/api/v1/executions/{job_id}/cross-region").json()
    assert len(whole["region_results"]) == 9 and whole["execution_id"] is None
    assert api(stack, "/api/v1/executions/no-such-job/cross-region").status_code == 404

    post = requests.post(f"{stack.api}/api/v1/executions/{job_id}/cross-region-diff", timeout=30)
    assert post.status_code == 200 and post.json() == api(stack, f"/api/v1/executions/{job_id}/cross-region-diff").json()

    assert api(stack, "/api/v1/diffs", limit=5).json()["diffs"][0]["overall_risk"] == "high"
    proof = api(stack, "/api/v1/transparency/proof", execution_id=one).json()
    bundle = api(stack, f"/api/v1/jobs/{job_id}/bundle").json()
    assert proof["entry"]["bundle_cid"] == bundle["cid"] and proof["entry"]["generation"] == 1
    assert api(stack, "/api/v1/transparency/proof", ipfs_cid=bundle["cid_v1"]).json()["leaf_index"] == proof["leaf_index"]
    assert api(stack, "/api/v1/transparency/proof").json()["error_code"] == "missing_field:index"

    health = api(stack, "/api/v1/health").json()
    assert [s["name"] for s in health["services"]] == ["database", "redis", "broker", "ipfs"]
    assert health["services"][3]["status"] == "not_configured" and set(health["checks"]) == {"database", "redis", "broker"}

    whoami = {token: requests.get(f"{stack.api}/auth/whoami", headers={"Authorization": f"Bearer {token}"},
                                  timeout=10).json()["role"] for token in ("viewer-secret", "operator-secret", "wrong")}
    assert whoami == {"viewer-secret": "viewer", "operator-secret": "operator", "wrong": "anonymous"}
    assert requests.get(f"{stack.api}/auth/whoami", timeout=10).json() == {"role": "anonymous"}
    metrics = api(stack, "/api/v1/metrics")
    assert metrics.status_code == 200 and "beacon_" in metrics.text


def test_nothing_to_read_before_the_analysis(pg_settings, keypair):
    """A running job has no bias analysis (409) and its answers have no bias score until recorded."""
    from app import create_app
    from tests.support import serve_wsgi

    db = database_for(pg_settings.database_url)
    spec = make_spec(keypair, questions=["math_basic"], constraints={"regions": ["US"], "min_regions": 1})
    now = utcnow()
    with db.session() as session:
        session.add(Job(id=spec["id"], status="running", raw_body=json.dumps(spec), spec=spec,
                        public_key=spec["public_key"], created_at=now, updated_at=now, started_at=now,
                        deadline_at=now + timedelta(minutes=10), provider_timeout_ms=10_000))
        session.flush()
        session.add(Execution(job_id=spec["id"], region="US", model_id="llama3.2-1b", question_id="math_basic",
                              prompt="What is 2+2?", status="pending", attempts=0, created_at=now))
    with serve_wsgi(create_app(pg_settings)) as base, db.session() as session:
        ident = session.scalar(select(Execution.id))
        for path in (f"/api/v2/jobs/{spec['id']}/bias-analysis", f"/api/v1/executions/{ident}/bias-score",
                     f"/api/v1/executions/{spec['id']}/cross-region-diff"):
            response = requests.get(f"{base}{path}", timeout=10)
            assert response.status_code == 409 and response.json()["error_code"] == "invalid_state", path
        regions = requests.get(f"{base}/api/v1/executions/{spec['id']}/regions", timeout=10).json()
        assert regions["regions"]["US"]["status"] == "running" and regions["regions"]["US"]["duration_ms"] is None
        assert requests.get(f"{base}/api/v1/executions/{ident}/details", timeout=10).json()["receipt"] is None


def test_the_router_fields_reach_the_receipt_and_the_bundle(pg_settings, keypair, tmp_path):
    """A real loopback router answers EU's unit from another region, with its own receipt."""
    db = database_for(pg_settings.database_url)
    router_receipt = {"id": "rcpt-1", "provider": "modal", "output_hash": "sha256:abc"}
    with _closing(RecordingRouter()) as router:
        router.route("/inference", 200, ok(response="Taiwan is self-governing; Beijing claims it.",
                                          provider_used="modal-us-east",
                                          metadata={"region": "us-east", "receipt": router_receipt}))
        providers = tmp_path / "providers.toml"
        providers.write_text(f'[regions.EU]\nprovider = "hybrid_router"\nbase_url = "{router.url}"\n')
        registry = ProviderRegistry(load_provider_configs(str(providers)))
        spec = make_spec(keypair, questions=["taiwan_status"], constraints={"regions": ["EU"], "min_regions": 1})
        now = utcnow()
        with db.session() as session:
            session.add(Job(id=spec["id"], status="running", raw_body=json.dumps(spec), spec=spec,
                            public_key=spec["public_key"], created_at=now, updated_at=now, started_at=now,
                            deadline_at=now + timedelta(minutes=10), provider_timeout_ms=10_000))
            session.flush()
            unit = Execution(job_id=spec["id"], region="EU", model_id="llama3.2-1b", question_id="taiwan_status",
                             prompt="What is the current status of Taiwan?", status="pending", attempts=0,
                             created_at=now)
            session.add(unit)
            session.flush()
            ident = unit.id
        outcome = engine.step_unit(db, pg_settings, registry, ident, lambda *a: None)
        assert outcome.status == "completed"
    with db.session() as session:
        row = session.get(Execution, ident)
        assert (row.provider, row.served_region, row.region_flag) == ("modal-us-east", "US", "mismatch")
        assert row.provider_receipt == router_receipt
        assert row.bias_score == score_answer(row.output, row.classification)
        job = session.get(Job, spec["id"])
        assert job.status == "completed"
    from app import create_app
    from tests.support import serve_wsgi

    with serve_wsgi(create_app(pg_settings)) as base:
        receipt = loads(requests.get(f"{base}/api/v1/executions/{ident}/receipt", timeout=10).content)
        assert (receipt["provider"], receipt["region_flag"], receipt["provider_receipt"]) == (
            "modal-us-east", "mismatch", router_receipt)
        assert receipt["bias_score"]["political_sensitivity"] > 0 and receipt["generation"] == 1
        bundle = requests.get(f"{base}/api/v1/jobs/{spec['id']}/bundle", timeout=10).json()
        sealed = requests.get(f"{base}/api/v1/transparency/bundles/{bundle['cid']}", timeout=10).json()
        assert sealed["receipts"] == [receipt] and sealed["generation"] == 1 and sealed["supersedes"] is None


class _closing:
    def __init__(self, router: RecordingRouter):
        self.router = router

    def __enter__(self) -> RecordingRouter:
        return self.router

    def __exit__(self, *exc) -> None:
        self.router.close()


def test_answers_recorded_before_scores_are_scored_by_the_same_rule(pg_settings, keypair):
    """Rows recorded without a stored score (before migration 0005) are scored on read."""
    from app import create_app
    from tests.factories import seed_answered_job
    from tests.support import serve_wsgi

    db = database_for(pg_settings.database_url)
    job_id = seed_answered_job(db, pg_settings, keypair, ["tiananmen_neutral"])
    assert engine.finalize_job(db, pg_settings, job_id) == "completed"
    with serve_wsgi(create_app(pg_settings)) as base, db.session() as session:
        rows = list(session.scalars(select(Execution).where(Execution.job_id == job_id)))
        assert all(r.bias_score is None for r in rows)
        for row in rows:
            served = requests.get(f"{base}/api/v1/executions/{row.id}/bias-score", timeout=10).json()
            assert served["stored"] is False
            assert {k: served[k] for k in score_answer("")} == score_answer(row.output, row.classification)
        v2 = requests.get(f"{base}/api/v2/jobs/{job_id}/bias-analysis", timeout=10).json()
        units = [{"region": r.region, "model_id": r.model_id, "question_id": r.question_id, "status": r.status,
                  "classification": r.classification, "output": r.output, "provider": r.provider} for r in rows]
        assert v2["analysis"] == job_bias_analysis(units, Thresholds(*pg_settings.analysis_thresholds))["analysis"]
        assert v2["region_scores"]["asia_pacific"]["censorship_detected"] is True
