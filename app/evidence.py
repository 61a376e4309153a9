"""Evidence over HTTP: cross-region diffs, receipts, bundles, the IPFS gateway, the transparency log."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.openapi import error_responses, json_response, path_param, query_param
from app.services import services
from beacon.errors import Corrupt, Invalid, InvalidState, ValidationError, not_found
from beacon.evidence import bundles, transparency
from beacon.evidence.blockstore import BlockCorrupt, BlockMissing, block_key, block_store, read_file
from beacon.evidence.identity import runner_identity
from beacon.evidence.receipts import receipt_text
from beacon.execution.analysis import unified_diff
from beacon.execution.engine import execution_dict
from beacon.models import Bundle, Execution, TransparencyEntry
from beacon.resources import analysis as portal_analysis
from beacon.resources import jobs
from beacon.resources.executions import get_execution
from beacon.timeutil import isoformat

bp = Blueprint("evidence", __name__)


@bp.record_once
def _load_runner_key(state) -> None:  # noqa: ANN001
    """Refuse to start without a usable runner key (created once in the embedded default)."""
    runner_identity(state.app.extensions["beacon"].settings)


# --------------------------------------------------------------------------- cross-region diff


def _pair(raw: str, regions: list[str]) -> tuple[str, str]:
    parts = [part.strip() for part in raw.split(",")]
    if len(parts) != 2 or not all(parts) or parts[0] == parts[1]:
        raise ValidationError(f"pair must name two different regions, e.g. US,EU; got {raw!r}", "pair")
    unknown = [part for part in parts if part not in regions]
    if unknown:
        raise ValidationError(f"region {unknown[0]} has no execution in this job (regions: {', '.join(regions)})",
                              "pair")
    return parts[0], parts[1]


def _diffs(session: Session, job_id: str, analysis: dict, pair: tuple[str, str]) -> list[dict[str, Any]]:
    question_id, model_id = request.args.get("question_id"), request.args.get("model_id")
    wanted = [(q["question_id"], q["model_id"]) for q in analysis["questions"]
              if question_id in (None, q["question_id"]) and model_id in (None, q["model_id"])]
    if not wanted:
        raise ValidationError(f"no analysed question matches question_id={question_id!r} model_id={model_id!r}",
                              "question_id" if question_id else "model_id")
    units = [execution_dict(u) for u in session.scalars(select(Execution).where(Execution.job_id == job_id))]
    out = []
    for qid, mid in wanted:
        item: dict[str, Any] = {"question_id": qid, "model_id": mid}
        try:
            text = unified_diff(units, qid, mid, *pair)
            item.update(identical=text == "", diff=text)
        except (KeyError, ValueError) as exc:
            item.update(diff=None, error=exc.args[0])
        out.append(item)
    return out


def _diff_view(job_id: str, go_metrics: bool = False):
    svc = services()
    with svc.db.session() as session:
        job = jobs.get_job(session, job_id)
        portal_analysis.require_analysis(job)
        analysis = job.analysis  # exactly as sealed in the bundle
        if go_metrics:  # the Go runner's numbers beside it, where the portal's diff page reads them
            analysis = {**analysis, **portal_analysis.go_metrics(session, svc.settings, job)}
        body: dict[str, Any] = {"job_id": job.id, "status": job.status, "generation": job.generation,
                                "analysis": analysis}
        if request.args.get("pair") is not None:
            pair = _pair(request.args["pair"], job.analysis["summary"]["regions_seen"])
            body.update(pair=list(pair), diffs=_diffs(session, job.id, job.analysis, pair))
        executions = portal_analysis.diff_executions(session, job.id)
        body.update(executions=executions, total_regions=len({e["region"] for e in executions}),
                    generated_at=isoformat(job.finished_at))
    return jsonify(body)


@bp.get("/api/v1/jobs/<job_id>/diff")
def job_diff(job_id: str):
    return _diff_view(job_id)


@bp.route("/api/v1/executions/<job_id>/cross-region-diff", methods=["GET", "POST"])
def cross_region_diff(job_id: str):
    """The Go runner's path for the same document (its <id> is the job id). POST (the portal's
    "create") answers the same: the analysis is made once per generation, at finalisation. Its
    ``analysis`` carries the Go runner's four numbers too, where the portal reads them."""
    return _diff_view(job_id, go_metrics=True)


# --------------------------------------------------------------------------- receipts, bundles, identity


@bp.get("/api/v1/runner/identity")
def identity():
    return jsonify(runner_identity(services().settings).describe())


@bp.get("/api/v1/executions/<execution_id>/receipt")
def receipt(execution_id: str):
    with services().db.session() as session:
        text = receipt_text(session, execution_id)
    return Response(text, mimetype="application/json")


@bp.get("/api/v1/jobs/<job_id>/bundle")
def job_bundle(job_id: str):
    with services().db.session() as session:
        job = jobs.get_job(session, job_id)
        bundle = bundles.job_bundle(session, job.id)
        if bundle is None:
            raise InvalidState("invalid_state", f"job {job_id} has no evidence bundle (it is {job.status})",
                           {"status": job.status})
        entry = session.scalars(select(TransparencyEntry).where(TransparencyEntry.bundle_cid == bundle.cid)).first()
        view = bundles.bundle_view(bundle)
        view["transparency"] = None if entry is None else {"leaf_index": entry.leaf_index,
                                                           "leaf_hash": bytes(entry.leaf_hash).hex()}
    return jsonify(view)


@bp.get("/api/v1/transparency/bundles/<cid>")
def bundle_json(cid: str):
    svc = services()
    with svc.db.session() as session:
        bundle = bundles.find_bundle(session, cid)
    data = bundles.verified_bytes(svc.db, svc.settings, bundle)
    return Response(data, mimetype="application/json", headers={"ETag": f'"{bundle.cid}"'})


@bp.get("/ipfs/<cid>")
def gateway(cid: str):
    svc = services()
    try:
        key = block_key(cid)
        data = read_file(block_store(svc.db, svc.settings.data_dir), key)
    except BlockMissing:
        raise not_found("content", cid) from None
    except BlockCorrupt as exc:
        raise Corrupt("evidence_corrupt", f"{cid} cannot be read back intact: {exc}") from None
    except ValueError as exc:
        raise Invalid("invalid_cid", str(exc)) from None
    with svc.db.session() as session:
        is_bundle = session.get(Bundle, key) is not None
    return Response(data, mimetype="application/json" if is_bundle else "application/octet-stream",
                    headers={"ETag": f'"{cid}"', "X-Ipfs-Path": f"/ipfs/{cid}",
                             "Cache-Control": "public, max-age=29030400, immutable"})


# --------------------------------------------------------------------------- transparency log


@bp.get("/api/v1/transparency/root")
def transparency_root():
    svc = services()
    with svc.db.session() as session:
        return jsonify(transparency.current_tree_head(session, runner_identity(svc.settings)))


def _entry_index(session: Session) -> int:
    """The log index ``index``, ``execution_id`` (its job's latest bundle) or ``ipfs_cid`` (a bundle) names."""
    execution_id, cid = request.args.get("execution_id"), request.args.get("ipfs_cid")
    if execution_id in (None, "") and cid in (None, ""):
        return transparency.parse_size(request.args.get("index"), "index")
    if execution_id not in (None, ""):
        execution = get_execution(session, execution_id)
        bundle = bundles.job_bundle(session, execution.job_id)
        if bundle is None:
            job = jobs.get_job(session, execution.job_id)
            raise InvalidState("invalid_state", f"execution {execution.id}'s job has no evidence bundle yet "
                               f"(it is {job.status})", {"status": job.status})
    else:
        bundle = bundles.find_bundle(session, cid)
    entry = session.scalars(select(TransparencyEntry).where(TransparencyEntry.bundle_cid == bundle.cid)).first()
    if entry is None:
        raise not_found("transparency entry of bundle", bundle.cid)
    return entry.leaf_index


@bp.get("/api/v1/transparency/proof")
def transparency_proof():
    raw_size = request.args.get("tree_size")
    tree_size = None if raw_size in (None, "") else transparency.parse_size(raw_size, "tree_size")
    with services().db.session() as session:
        index = _entry_index(session)
        return jsonify(transparency.inclusion(session, index, tree_size))


@bp.get("/api/v1/transparency/consistency")
def transparency_consistency():
    first = transparency.parse_size(request.args.get("first"), "first")
    second = transparency.parse_size(request.args.get("second"), "second")
    with services().db.session() as session:
        return jsonify(transparency.consistency(session, first, second))


# --------------------------------------------------------------------------- OpenAPI

_SIGNED = {"signature": {"type": "string"}, "public_key": {"type": "string"}}
_TREE_HEAD = {"type": "object", "description": "signed by the runner key", "properties": {
    "kind": {"const": "tree_head"}, "tree_size": {"type": "integer"}, "root_hash": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"}, "key_id": {"type": "string"}, **_SIGNED}}
_CID = path_param("cid", "a CIDv0 (Qm…) or base32 CIDv1 (bafy…)")
_DIFF_PARAMS = [
    query_param("pair", {"type": "string", "examples": ["US,EU"]}, "two regions: add their unified diffs"),
    query_param("question_id", {"type": "string"}, "with pair: only this question"),
    query_param("model_id", {"type": "string"}, "with pair: only this model"),
]
_DIFF = json_response({"type": "object", "properties": {
    "job_id": {"type": "string"}, "status": {"type": "string"}, "generation": {"type": "integer"},
    "analysis": {"type": "object", "description": (
        "see docs/analysis.md, exactly as sealed in the bundle; on the Go runner's path "
        "(/api/v1/executions/{job_id}/cross-region-diff) with its bias_variance, censorship_rate, "
        "factual_consistency, narrative_divergence and recommendation beside it (the v2 bias analysis's numbers)")},
    "executions": {"type": "array", "description": (
        "the job's units, each with Go's provider_id and output_data {response, bias_score, metadata.model}"),
        "items": {"$ref": "#/components/schemas/Execution"}},
    "total_regions": {"type": "integer"}, "generated_at": {"type": "string", "format": "date-time"},
    "pair": {"type": "array", "items": {"type": "string"}},
    "diffs": {"type": "array", "items": {"type": "object", "properties": {
        "question_id": {"type": "string"}, "model_id": {"type": "string"}, "identical": {"type": "boolean"},
        "diff": {"type": ["string", "null"], "description": "unified diff, sentence per line"},
        "error": {"type": "string"}}}},
}}, "the job's cross-region analysis")

OPENAPI: dict[str, dict[str, Any]] = {
    "/api/v1/jobs/{job_id}/diff": {"get": {
        "summary": "Cross-region analysis of a job, with unified diffs for a region pair on request",
        "parameters": [path_param("job_id", "the JobSpec id"), *_DIFF_PARAMS],
        "responses": {"200": _DIFF, **error_responses(400, 404, 409)},
    }},
    "/api/v1/executions/{job_id}/cross-region-diff": {
        "get": {
            "summary": "The Go runner's path for /api/v1/jobs/{job_id}/diff (the id is the job id)",
            "parameters": [path_param("job_id", "the JobSpec id"), *_DIFF_PARAMS],
            "responses": {"200": _DIFF, **error_responses(400, 404, 409)},
        },
        "post": {
            "summary": "The portal's 'create' of the same diff: answers the GET's document (the analysis is made "
                       "once per generation, at finalisation)",
            "parameters": [path_param("job_id", "the JobSpec id"), *_DIFF_PARAMS],
            "responses": {"200": _DIFF, **error_responses(400, 404, 409)},
        },
    },
    "/api/v1/runner/identity": {"get": {
        "summary": "The runner's public key, which signs receipts, bundles and tree heads",
        "responses": {"200": json_response({"type": "object", "properties": {
            "key_id": {"type": "string"}, "public_key": {"type": "string"}, "algorithm": {"const": "ed25519"}}},
            "the runner identity")},
    }},
    "/api/v1/executions/{execution_id}/receipt": {"get": {
        "summary": "The signed receipt of an execution, exactly as bundled (check it with `beacon verify`)",
        "parameters": [path_param("execution_id", "the execution id")],
        "responses": {"200": json_response({"allOf": [{"$ref": "#/components/schemas/Execution"}, {
            "type": "object", "properties": {"kind": {"const": "execution_receipt"}, "receipt_version": {"const": 1},
                                             "runner_key_id": {"type": "string"}, "issued_at": {"type": "string"},
                                             **_SIGNED}}]}, "the receipt"),
                      **error_responses(404, 409)},
    }},
    "/api/v1/jobs/{job_id}/bundle": {"get": {
        "summary": "The job's evidence bundle: CIDs, hash, pin state and transparency entry",
        "parameters": [path_param("job_id", "the JobSpec id")],
        "description": "The latest generation's bundle; supersedes names the CID of the one before.",
        "responses": {"200": json_response({"type": "object", "properties": {
            "cid": {"type": "string"}, "cid_v1": {"type": "string"}, "sha256": {"type": "string"},
            "size": {"type": "integer"}, "generation": {"type": "integer"}, "supersedes": {"type": ["string", "null"]},
            "pin": {"type": "object"}, "transparency": {"type": ["object", "null"]}}},
            "bundle metadata"), **error_responses(404, 409)},
    }},
    "/api/v1/transparency/bundles/{cid}": {"get": {
        "summary": "A bundle's signed JSON, re-checked against its CID and hash from the stored blocks",
        "parameters": [_CID],
        "responses": {"200": json_response({"type": "object"}, "the bundle"), **error_responses(400, 404, 500)},
    }},
    "/ipfs/{cid}": {"get": {
        "summary": "Gateway: the raw bytes of stored content, reassembled from its blocks",
        "parameters": [_CID],
        "responses": {"200": {"description": "the bytes", "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            **error_responses(400, 404, 500)},
    }},
    "/api/v1/transparency/root": {"get": {
        "summary": "The signed tree head of the transparency log",
        "responses": {"200": json_response(_TREE_HEAD, "size, root and signature")},
    }},
    "/api/v1/transparency/proof": {"get": {
        "summary": "Inclusion proof of one log entry (check it with `beacon verify-proof`)",
        "description": "Name the entry by index, or by execution_id (the entry of the latest bundle of its job: "
                       "the latest generation), or by ipfs_cid (a bundle's CID).",
        "parameters": [
            query_param("index", {"type": "integer", "minimum": 0}, "the entry's index"),
            query_param("execution_id", {"type": "integer"}, "an execution: its job's latest bundle's entry"),
            query_param("ipfs_cid", {"type": "string"}, "a bundle CID: its entry"),
            query_param("tree_size", {"type": "integer", "minimum": 1}, "prove against this size (default: all)"),
        ],
        "responses": {"200": json_response({"type": "object", "properties": {
            "kind": {"const": "inclusion_proof"}, "leaf_index": {"type": "integer"}, "tree_size": {"type": "integer"},
            "entry": {"type": "object"}, "leaf_hash": {"type": "string"},
            "audit_path": {"type": "array", "items": {"type": "string"}}, "root_hash": {"type": "string"},
            "tree_head": _TREE_HEAD}}, "the proof"), **error_responses(400, 404, 409)},
    }},
    "/api/v1/transparency/consistency": {"get": {
        "summary": "Consistency proof between two sizes of the log (check it with `beacon verify-proof`)",
        "parameters": [
            {**query_param("first", {"type": "integer", "minimum": 0}, "the smaller size"), "required": True},
            {**query_param("second", {"type": "integer", "minimum": 1}, "the larger size"), "required": True},
        ],
        "responses": {"200": json_response({"type": "object", "properties": {
            "kind": {"const": "consistency_proof"}, "first": {"type": "integer"}, "second": {"type": "integer"},
            "first_root": {"type": "string"}, "second_root": {"type": "string"},
            "proof": {"type": "array", "items": {"type": "string"}},
            "first_tree_head": {"oneOf": [_TREE_HEAD, {"type": "null"}]}, "second_tree_head": _TREE_HEAD}},
            "the proof"), **error_responses(400)},
    }},
}
