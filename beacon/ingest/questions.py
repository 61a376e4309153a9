"""The question catalogue JobSpec ``questions`` refer to (the Go runner's, extendable)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BUILTIN = Path(__file__).resolve().parent.parent / "data" / "questions.json"


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    category: str


def _read(path: Path) -> list[Question]:
    try:
        doc = json.loads(path.read_text())
        return [
            Question(item["question_id"], item["question"], category)
            for category, items in doc["categories"].items()
            for item in items
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"question catalogue {path} must be {{'categories': {{name: [{{question_id, question}}]}}}}: {exc}"
        ) from exc


@lru_cache(maxsize=8)
def load_catalogue(extra_file: str | None = None) -> dict[str, Question]:
    """The built-in catalogue, extended (or overridden by id) by ``QUESTIONS_FILE``."""
    questions = {q.id: q for q in _read(BUILTIN)}
    if extra_file:
        questions.update({q.id: q for q in _read(Path(extra_file))})
    return questions
