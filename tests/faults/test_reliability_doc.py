"""docs/RELIABILITY.md is generated, and lists every fault case the suite defines (no services needed)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.reliability_report import HEADER, render
from tests.faults.cases import CASES, INVARIANTS

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_generated_and_lists_every_case():
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    assert text.startswith(HEADER)
    for case in CASES:
        assert f"| `{case}` |" in text, f"docs/RELIABILITY.md does not list fault case {case!r}"


def test_every_case_is_listed_even_without_results(tmp_path):
    text = render(tmp_path)
    for case in CASES:
        assert f"| `{case}` | {CASES[case]} | – | not run |" in text
    for invariant in INVARIANTS:
        assert f"`{invariant}`" in text


def test_results_failures_and_hostile_lines_are_rendered(tmp_path):
    lines = [{"case": "worker_sigkill", "invariant": name, "result": "pass", "recovery_s": 4.26, "jobs": 3,
              "jobs_completed": 3, "bound_s": 60, "scale": "ci"} for name in INVARIANTS]
    lines.append({"case": "database_outage", "invariant": "outbox_drained", "result": "fail", "recovery_s": None,
                  "detail": "2 unpublished"})
    (tmp_path / "faults.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"cut sho')
    (tmp_path / "hostile.jsonl").write_text(
        json.dumps({"case": "deep_json", "expected": {"status": 400}, "got": {"status": 400, "error_code": "x"}}) + "\n"
        + json.dumps({"case": "huge_body", "expected": {"status": 413}, "got": {"status": 500}}) + "\n")
    text = render(tmp_path)
    assert "| `worker_sigkill` | " in text and "| ci | pass | 4.3 | 60 | 3/3 |" in text
    assert "FAIL: outbox_drained" in text and "2 unpublished" in text
    assert "1 of 2 cases answered as expected" in text
