"""Client side of a submission: follow a job over HTTP until it ends, then show its answers."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

TERMINAL = ("completed", "failed", "cancelled")


def follow_job(base_url: str, job_id: str, console: Console, timeout_s: float = 3600, poll_s: float = 0.25,
               check: Callable[[], None] | None = None) -> dict:
    """Poll the job with a progress bar until it is terminal; returns the job with its executions.

    ``check`` runs before each poll and may raise to stop following (e.g. a process died).
    """
    url = f"{base_url}/api/v1/jobs/{job_id}"
    deadline = time.monotonic() + timeout_s
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(f"{job_id} queued", total=None)
        while True:
            if check:
                check()
            response = requests.get(url, params={"include": "executions"}, timeout=30)
            response.raise_for_status()
            job = response.json()
            counts = job["counts"]
            done = counts["completed"] + counts["failed"] + counts["timeout"]
            progress.update(bar, total=counts["units"] or None, completed=done,
                            description=f"{job_id} {job['status']}")
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f}s")
            time.sleep(poll_s)


def _cell(execution: dict[str, Any], width: int = 90) -> str:
    if execution["status"] != "completed":
        code = (execution.get("failure") or {}).get("code", "")
        return f"[red]{execution['status']}[/red] {code}".strip()
    style = "yellow" if execution["classification"] == "content_refusal" else "green"
    text = " ".join((execution["output"] or "").split())
    if len(text) > width:
        text = text[: width - 1] + "…"
    tokens = ""
    usage = execution.get("usage")
    if usage and usage.get("completion_tokens") is not None:
        tokens = f"\n[dim]{usage['completion_tokens']} tokens{', truncated' if execution.get('truncated') else ''}[/dim]"
    return f"[{style}]{execution['classification']}[/{style}]\n{text}{tokens}"


def answers_table(job: dict[str, Any]) -> Table:
    """One row per question × model, one column per region."""
    executions = job.get("executions", [])
    regions = list(dict.fromkeys(job["spec"]["constraints"]["regions"]))
    table = Table(title=f"{job['id']}: {job['status']}", show_lines=True)
    table.add_column("question")
    table.add_column("model")
    for region in regions:
        table.add_column(region)
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for execution in executions:
        cells.setdefault((execution["question_id"], execution["model_id"]), {})[execution["region"]] = execution
    for (question, model), by_region in sorted(cells.items()):
        table.add_row(question, model, *(_cell(by_region[r]) if r in by_region else "" for r in regions))
    return table


def analysis_table(analysis: dict[str, Any]) -> Table:
    """One row per question × model: the risk level and the rule that set it."""
    summary = analysis["summary"]
    table = Table(title=f"cross-region analysis: overall risk {summary['overall_risk']}", show_lines=False)
    for column in ("question", "model", "risk", "divergence", "why"):
        table.add_column(column)
    styles = {"high": "red", "medium": "yellow", "low": "green"}
    for question in analysis["questions"]:
        risk = question["risk"]
        divergence = "—" if question["divergence"] is None else f"{question['divergence']:.2f}"
        table.add_row(question["question_id"], question["model_id"], f"[{styles[risk]}]{risk}[/{styles[risk]}]",
                      divergence, question["risk_rule"])
    return table


def event_stream(base_url: str, job_id: str, since: int = 0, timeout_s: float = 60):  # noqa: ANN201
    """The job's events from ``GET /api/v1/jobs/<id>/events`` as Server-Sent Events (one dict each),
    reconnecting from the last ``seq`` seen when the stream breaks."""
    last = since
    while True:
        try:
            with requests.get(f"{base_url}/api/v1/jobs/{job_id}/events", params={"since": last},
                              headers={"Accept": "text/event-stream"}, stream=True, timeout=timeout_s) as response:
                response.raise_for_status()
                for line in response.iter_lines(decode_unicode=True):
                    if line and line.startswith("data: "):
                        event = json.loads(line[6:])
                        last = max(last, event.get("seq") or last)
                        yield event
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            time.sleep(0.5)  # the API restarted or a proxy cut the stream: reconnect from ``last``


def watch_job(base_url: str, job_id: str, console: Console) -> dict:
    """A progress bar per region driven by the job's events until it ended; returns the job with its executions."""
    job_url = f"{base_url}/api/v1/jobs/{job_id}"
    response = requests.get(job_url, params={"include": "executions"}, timeout=30)
    response.raise_for_status()
    job = response.json()
    regions = list(dict.fromkeys(r.upper() for r in job["spec"]["constraints"]["regions"]))
    per_region = {r: sum(1 for e in job.get("executions", []) if e["region"] == r) for r in regions}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        status = progress.add_task(f"{job_id} {job['status']}", total=None)
        bars = {r: progress.add_task(f"  {r}", total=per_region[r] or None) for r in regions}
        done: dict[str, set] = {r: set() for r in regions}
        for event in event_stream(base_url, job_id):
            kind, data = event.get("type", ""), event.get("data") or {}
            region = data.get("region")
            if kind in ("unit.started", "unit.completed", "unit.failed") and region in bars:
                if kind == "unit.started" and not per_region[region]:
                    progress.update(bars[region], total=None)
                if kind != "unit.started":
                    done[region].add(data.get("execution_id"))
                    progress.update(bars[region], completed=len(done[region]))
            if kind.startswith("job."):
                progress.update(status, description=f"{job_id} {data.get('status') or kind.split('.')[1]}")
            if kind in ("transparency.appended", "job.cancelled"):
                break
    final = requests.get(job_url, params={"include": "executions"}, timeout=30)
    final.raise_for_status()
    return final.json()
