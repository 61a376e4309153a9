"""Web pages people read: ``/`` (recent jobs) and ``/jobs/<id>`` (a live grid, then the answers).

Server-rendered (Jinja templates in ``app/templates``) with a little plain JavaScript and one
stylesheet in ``app/static``: no build step, no CDN. The job page's grid (region × model ×
question) fills from the job's events (``/ws?job_id=&since=``, the SSE stream as a fallback); the
answers side by side with the words that differ highlighted, refusals marked, the pairwise
similarity heat map, the risk and its rule, the bundle, receipts and transparency proof follow
once the job ended. Pages carry ``Content-Security-Policy: default-src 'self'`` (scripts and
styles from files only, ``connect-src 'self'``); the API keeps ``default-src 'none'``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

from flask import Blueprint, Response, render_template
from sqlalchemy import func, select

from app.services import services
from beacon.evidence.bundles import job_bundle
from beacon.models import Execution, Job
from beacon.resources.jobs import get_job

bp = Blueprint("pages", __name__)

PAGE_CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'"
RECENT = 50
WORD = re.compile(r"[\w']+|[^\w\s]+|\s+")

_HTML = {"200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}}
OPENAPI = {
    "/": {"get": {"summary": "Web page: recent jobs (status, regions, models, progress, risk, submitter)",
                  "responses": _HTML}},
    "/jobs/{job_id}": {"get": {
        "summary": "Web page: one job, live while it runs, then its answers side by side and its evidence",
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {**_HTML, "404": {"description": "no such job (an HTML page)"}}}},
}


def _page(html: str, status: int = 200) -> Response:
    response = Response(html, status=status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


def _regions(spec: dict) -> list[str]:
    return [str(r).upper() for r in (spec.get("constraints") or {}).get("regions") or []]


def _models(spec: dict) -> list[str]:
    return [m if isinstance(m, str) else str(m.get("id")) for m in spec.get("models") or []]


@bp.get("/")
def index() -> Response:
    db = services().db
    with db.session() as session:
        jobs = list(session.scalars(select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(RECENT)))
        counts: dict[str, Counter] = defaultdict(Counter)
        if jobs:
            for job_id, status, n in session.execute(
                    select(Execution.job_id, Execution.status, func.count()).where(
                        Execution.job_id.in_([j.id for j in jobs])).group_by(Execution.job_id, Execution.status)):
                counts[job_id][status] += n
    rows = []
    for job in jobs:
        c = counts[job.id]
        total = sum(c.values())
        done = total - c["pending"] - c["running"]
        rows.append({"id": job.id, "status": job.status, "created_at": job.created_at, "regions": _regions(job.spec),
                     "models": _models(job.spec) or ["(default)"], "done": done, "total": total,
                     "risk": ((job.analysis or {}).get("summary") or {}).get("overall_risk"),
                     "submitter": job.submitter_wallet or (job.public_key[:12] + "…")})
    return _page(render_template("index.html", jobs=rows))


def _differing_words(outputs: dict[str, str]) -> dict[str, list[tuple[str, bool]]]:
    """Each region's answer as (piece, differs) pairs: a word differs when some other answer lacks it."""
    words = {r: {w.lower() for w in re.findall(r"[\w']+", text)} for r, text in outputs.items()}
    marked = {}
    for region, text in outputs.items():
        others = [words[o] for o in outputs if o != region]
        pieces = []
        for piece in WORD.findall(text):
            is_word = bool(re.match(r"[\w']+$", piece))
            pieces.append((piece, is_word and any(piece.lower() not in o for o in others)))
        marked[region] = pieces
    return marked


def _heat(value: float | None) -> str:
    if value is None:
        return "heat-none"
    return f"heat-{min(4, int(value * 5))}"


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> Response:
    db = services().db
    with db.session() as session:
        job = get_job(session, job_id)
        units = list(session.scalars(select(Execution).where(Execution.job_id == job_id).order_by(Execution.id)))
        bundle = job_bundle(session, job_id)
        seq = job.event_seq
    regions = sorted({u.region for u in units}) or _regions(job.spec)
    models = sorted({u.model_id for u in units}) or _models(job.spec)
    questions = sorted({u.question_id for u in units})
    cells = {(u.region, u.model_id, u.question_id): u for u in units}
    analysis = job.analysis or {}
    by_question = {(q["question_id"], q["model_id"]): q for q in analysis.get("questions") or []}
    answers = []
    for question in questions:
        for model in models:
            present = {r: cells[(r, model, question)] for r in regions if (r, model, question) in cells}
            texts = {r: u.output or "" for r, u in present.items() if u.output}
            marked = _differing_words({r: t for r, t in texts.items()
                                       if present[r].classification != "content_refusal"})
            entry = by_question.get((question, model)) or {}
            pairs = {tuple(p["pair"]): p for p in entry.get("pairwise_similarity") or []}
            compared = entry.get("compared_regions") or sorted(present)
            grid = [[(a, b, 1.0 if a == b else (pairs.get((a, b)) or pairs.get((b, a)) or {}).get("similarity"))
                     for b in compared] for a in compared]
            answers.append({"question": question, "model": model, "units": present, "marked": marked,
                            "risk": entry.get("risk"), "risk_rule": entry.get("risk_rule"),
                            "divergence": entry.get("divergence"), "compared": compared, "grid": grid,
                            "signals": entry.get("censorship_signals") or []})
    summary = analysis.get("summary") or {}
    html = render_template(
        "job.html", job=job, regions=regions, models=models, questions=questions, cells=cells, seq=seq,
        answers=answers, summary=summary, bundle=bundle, heat=_heat, terminal=job.status in
        ("completed", "failed", "cancelled"), submitter=job.submitter_wallet or job.public_key)
    return _page(html)


