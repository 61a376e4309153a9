"""One JSON line per checked invariant in ``$BEACON_REPORT_DIR/faults.jsonl`` (when the variable is set)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def report_dir() -> Path | None:
    value = os.environ.get("BEACON_REPORT_DIR", "").strip()
    return Path(value) if value else None


def append(file_name: str, line: dict[str, Any]) -> None:
    folder = report_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / file_name).open("a") as handle:
        handle.write(json.dumps(line, sort_keys=True) + "\n")


def record(case: str, invariant: str, result: bool, recovery_s: float | None, **extra: Any) -> None:
    """``{case, invariant, result, recovery_s}`` (plus the case's measurements) to faults.jsonl."""
    append("faults.jsonl", {"case": case, "invariant": invariant, "result": "pass" if result else "fail",
                            "recovery_s": None if recovery_s is None else round(recovery_s, 2), **extra})
