"""Test data factories: signed JobSpecs, request bodies, jobs with their units."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from beacon.crypto.signing import KeyPair, sign_document
from beacon.timeutil import isoformat, utcnow

BASE_SPEC: dict[str, Any] = {
    "version": "1.0",
    "benchmark": {
        "name": "Who are you?",
        "container": {"image": "alpine", "tag": "3.18"},
        "input": {"type": "prompt", "data": {"prompt": "Who are you?"}, "hash": "sha256:abc"},
    },
    "constraints": {"regions": ["US", "EU", "APAC"], "min_regions": 1},
    "metadata": {},
}


def make_spec(key: KeyPair, **overrides: Any) -> dict[str, Any]:
    """A freshly signed JobSpec: unique id and nonce, timestamp now; overrides before signing."""
    doc = copy.deepcopy(BASE_SPEC)
    doc["id"] = f"job-{uuid.uuid4()}"
    doc["metadata"] = {"nonce": uuid.uuid4().hex, "timestamp": isoformat(utcnow().replace(microsecond=0))}
    for key_name, value in overrides.items():
        doc[key_name] = value
    return sign_document(doc, key.signing_key)


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def seed_answered_job(db, settings, key: KeyPair, questions: list[str], regions: tuple[str, ...] = ("US", "EU", "APAC"),
                      models: tuple[str, ...] = ("llama3.2-1b",)) -> str:
    """A running job whose units already hold the built-in simulator's answers, ready to finalise."""
    import hashlib
    from datetime import timedelta

    from beacon.execution.classify import classify
    from beacon.execution.providers import simulate_answer
    from beacon.ingest.questions import load_catalogue
    from beacon.models import Execution, Job

    spec = make_spec(key, questions=questions, models=list(models),
                     constraints={"regions": list(regions), "min_regions": 1})
    catalogue = load_catalogue(settings.questions_file)
    now = utcnow()
    with db.session() as session:
        session.add(Job(id=spec["id"], status="running", raw_body=json.dumps(spec), spec=spec,
                        public_key=spec["public_key"], created_at=now, updated_at=now, started_at=now,
                        deadline_at=now + timedelta(minutes=10)))
        session.flush()
        for region in regions:
            for model in models:
                for qid in questions:
                    prompt = catalogue[qid].text
                    output = simulate_answer(region, model, prompt)
                    session.add(Execution(
                        job_id=spec["id"], region=region, model_id=model, question_id=qid, prompt=prompt,
                        status="completed", provider="simulator", served_region=region, output=output,
                        output_sha256=hashlib.sha256(output.encode()).hexdigest(),
                        classification=classify(output, failed=False), attempts=1, started_at=now,
                        completed_at=now, duration_ms=1, created_at=now))
    return spec["id"]


def mebibyte_spec() -> dict[str, Any]:
    """A JobSpec-shaped value whose signing form is just over 1 MiB: non-ASCII questions, floats,
    integers beyond 2**53, escaped strings."""
    questions = [f"question_{i}_" + "\u00e9x" * 20 for i in range(5500)]
    metadata = {f"k{i}": {"n": i * 1.5, "big": 2**60 + i, "s": 'text\n"quoted" ' * 3, "ok": True} for i in range(5500)}
    return {"benchmark": {"name": "bias"}, "questions": questions, "metadata": metadata, "runs": 1}
