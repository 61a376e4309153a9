"""The JobSpec: the Go runner's format, validated with errors that name the field.

``parse_jobspec`` checks the schema of a decoded document and returns a ``JobSpec`` with the
Go runner's defaults applied. Signatures are ``beacon.crypto.signing``'s concern; trust, time and
replay are the ingest service's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from beacon.errors import ValidationError
from beacon.region_names import canonical_region

NS_PER_SECOND = 1_000_000_000
#: A duration below this is seconds; at or above it, Go's integer nanoseconds (the portal sends 600000000000).
SECONDS_BELOW = 1_000_000
DEFAULT_TIMEOUT_NS = 10 * 60 * NS_PER_SECOND
DEFAULT_PROVIDER_TIMEOUT_NS = 2 * 60 * NS_PER_SECOND
MIN_TIMEOUT_NS = 30 * NS_PER_SECOND
MAX_TIMEOUT_NS = 60 * 60 * NS_PER_SECOND
MIN_PROVIDER_TIMEOUT_NS = 1 * NS_PER_SECOND
MAX_METADATA_BYTES = 64 * 1024
DEFAULT_MIN_REGIONS = 3
DEFAULT_MIN_SUCCESS_RATE = 0.67
PROMPT_QUESTION_ID = "prompt"
#: Every job id, signed or generated (it appears in URLs and queue payloads).
JOB_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

# The fields each object of the schema allows (objects not listed here are free-form).
TOP_FIELDS = {
    "id", "jobspec_id", "version", "benchmark", "constraints", "metadata", "questions", "models",
    "runs", "wallet_auth", "created_at", "signature", "public_key",
}
BENCHMARK_FIELDS = {"name", "version", "description", "container", "input", "scoring", "metadata"}
CONTAINER_FIELDS = {"image", "tag", "command", "environment", "resources"}
INPUT_FIELDS = {"type", "data", "hash"}
CONSTRAINT_FIELDS = {
    "regions", "min_regions", "min_success_rate", "timeout", "provider_timeout", "max_cost",
    "providers",
}
MODEL_FIELDS = {"id", "name", "provider", "regions", "container_image"}
WALLET_AUTH_FIELDS = {"address", "signature", "message", "chainId", "nonce", "expiresAt"}


@dataclass(frozen=True)
class ModelRef:
    id: str
    name: str | None = None
    provider: str | None = None
    regions: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Unit:
    region: str
    model_id: str
    question_id: str
    prompt: str


@dataclass(frozen=True)
class JobSpec:
    id: str | None  # None: the runner generates one (``beacon.ingest.ingestor``)
    regions: tuple[str, ...]
    min_regions: int
    min_success_rate: float
    timeout_ns: int
    provider_timeout_ns: int
    models: tuple[ModelRef, ...]
    question_ids: tuple[str, ...]
    prompt: str | None
    nonce: str
    timestamp: str
    public_key: str
    signature: str
    document: dict[str, Any]

    @property
    def timeout_s(self) -> float:
        return self.timeout_ns / NS_PER_SECOND

    @property
    def provider_timeout_s(self) -> float:
        return self.provider_timeout_ns / NS_PER_SECOND

    def units(self, catalogue: dict[str, Any]) -> list[Unit]:
        """Every region × model × question unit of the job, in a stable order."""
        if self.question_ids:
            questions = [(qid, catalogue[qid].text) for qid in self.question_ids]
        else:
            questions = [(PROMPT_QUESTION_ID, self.prompt or "")]
        return [
            Unit(region, model.id, qid, text)
            for region in self.regions
            for model in self.models
            if model.regions is None or region in model.regions
            for qid, text in questions
        ]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _object(value: Any, path: str, allowed: set[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{path} must be an object", path)
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            prefix = f"{path}." if path else ""
            raise ValidationError(
                f"unknown field {prefix}{unknown[0]} (allowed: {', '.join(sorted(allowed))})",
                f"{prefix}{unknown[0]}",
            )
    return value


def _required(obj: dict[str, Any], key: str, path: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise ValidationError(f"{path} is required", path, missing=True)
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be a string", path)
    return value


def _optional_object(obj: dict[str, Any], key: str, path: str, allowed: set[str] | None) -> dict | None:
    value = obj.get(key)
    return None if value is None else _object(value, path, allowed)


def _string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError(f"{path} must be an array of non-empty strings", path)
    if len(set(value)) != len(value):
        raise ValidationError(f"{path} must not repeat an entry", path)
    return value


def _duration(constraints: dict[str, Any], key: str, default: int) -> int:
    """Nanoseconds. Absent or 0 → the default; below SECONDS_BELOW the value is seconds, else nanoseconds."""
    value = constraints.get(key)
    if value is None or value == 0:
        return default
    if not _is_number(value) or value < 0 or value != value or value in (float("inf"),):
        raise ValidationError(f"constraints.{key} must be a positive number of seconds, or integer nanoseconds",
                              f"constraints.{key}")
    if value < SECONDS_BELOW:
        return int(value * NS_PER_SECOND)
    if not _is_int(value):
        raise ValidationError(f"constraints.{key} of {SECONDS_BELOW} or more must be integer nanoseconds",
                              f"constraints.{key}")
    return value


def _regions(value: Any, path: str) -> list[str]:
    """Canonical region names (``beacon.region_names``); two spellings of one region are a duplicate."""
    names = [canonical_region(name) for name in _string_list(value, path)]
    if len(set(names)) != len(names):
        raise ValidationError(f"{path} names a region twice (ASIA is APAC)", path)
    return names


def _models(doc: dict[str, Any], default_model: str) -> tuple[ModelRef, ...]:
    raw = doc.get("models")
    if raw is None:
        raw = (doc.get("metadata") or {}).get("models")
    if raw is None or raw == []:
        return (ModelRef(default_model),)
    if not isinstance(raw, list):
        raise ValidationError("models must be an array of model ids or objects", "models")
    models = []
    for index, item in enumerate(raw):
        path = f"models[{index}]"
        if isinstance(item, str) and item:
            models.append(ModelRef(item))
            continue
        entry = _object(item, path, MODEL_FIELDS)
        model_id = _string(_required(entry, "id", f"{path}.id"), f"{path}.id")
        regions = entry.get("regions")
        models.append(
            ModelRef(
                model_id,
                name=None if entry.get("name") is None else _string(entry["name"], f"{path}.name"),
                provider=None if entry.get("provider") is None else _string(entry["provider"], f"{path}.provider"),
                regions=None if regions is None else tuple(_regions(regions, f"{path}.regions")),
            )
        )
    ids = [model.id for model in models]
    if len(set(ids)) != len(ids):
        raise ValidationError("models must not repeat a model id", "models")
    return tuple(models)


def parse_jobspec(
    doc: Any,
    *,
    default_model: str = "llama3.2-1b",
    catalogue: dict[str, Any] | None = None,
    known_regions: Iterable[str] | None = None,
    max_units: int = 500,
) -> JobSpec:
    """Validate a decoded JobSpec and apply the Go runner's defaults.

    Raises ``ValidationError`` naming the first offending field.
    """
    doc = _object(doc, "", TOP_FIELDS)
    job_id = doc.get("jobspec_id") or doc.get("id") or None
    if job_id is not None:
        job_id = _string(job_id, "id")
        if not JOB_ID.fullmatch(job_id):
            raise ValidationError("id must match [A-Za-z0-9._:-]{1,128}", "id")
    _string(_required(doc, "version", "version"), "version")

    benchmark = _object(_required(doc, "benchmark", "benchmark"), "benchmark", BENCHMARK_FIELDS)
    _string(_required(benchmark, "name", "benchmark.name"), "benchmark.name")
    container = _object(
        _required(benchmark, "container", "benchmark.container"), "benchmark.container", CONTAINER_FIELDS
    )
    _string(_required(container, "image", "benchmark.container.image"), "benchmark.container.image")
    for key in ("environment", "resources"):
        _optional_object(container, key, f"benchmark.container.{key}", None)
    bench_input = _object(_required(benchmark, "input", "benchmark.input"), "benchmark.input", INPUT_FIELDS)
    _string(_required(bench_input, "type", "benchmark.input.type"), "benchmark.input.type")
    _string(_required(bench_input, "hash", "benchmark.input.hash"), "benchmark.input.hash")
    data = bench_input.get("data")
    if data is None:
        raise ValidationError("benchmark.input.data is required", "benchmark.input.data", missing=True)
    for key in ("scoring", "metadata"):
        _optional_object(benchmark, key, f"benchmark.{key}", None)

    constraints = _object(_required(doc, "constraints", "constraints"), "constraints", CONSTRAINT_FIELDS)
    regions = _regions(_required(constraints, "regions", "constraints.regions"), "constraints.regions")
    if known_regions is not None:
        known = set(known_regions)
        missing = [region for region in regions if region not in known]
        if missing:
            raise ValidationError(
                f"constraints.regions: no provider is configured for region {missing[0]} "
                f"(configured: {', '.join(sorted(known))})",
                "constraints.regions",
            )
    min_regions = constraints.get("min_regions")
    if min_regions is None or min_regions == 0:  # Go's rule: Go-signed specs always carry zeros
        min_regions = DEFAULT_MIN_REGIONS
    elif not _is_int(min_regions) or min_regions < 0:
        raise ValidationError("constraints.min_regions must be a non-negative integer", "constraints.min_regions")
    min_success_rate = constraints.get("min_success_rate")
    if min_success_rate is None or min_success_rate == 0:
        min_success_rate = DEFAULT_MIN_SUCCESS_RATE
    elif not _is_number(min_success_rate) or not 0 <= min_success_rate <= 1:
        raise ValidationError(
            "constraints.min_success_rate must be a number from 0 to 1", "constraints.min_success_rate"
        )
    timeout_ns = _duration(constraints, "timeout", DEFAULT_TIMEOUT_NS)
    if not MIN_TIMEOUT_NS <= timeout_ns <= MAX_TIMEOUT_NS:
        raise ValidationError(
            "constraints.timeout must be from 30 s to 60 min (integer nanoseconds)", "constraints.timeout"
        )
    provider_timeout_ns = _duration(constraints, "provider_timeout", DEFAULT_PROVIDER_TIMEOUT_NS)
    if not MIN_PROVIDER_TIMEOUT_NS <= provider_timeout_ns <= timeout_ns:
        raise ValidationError("constraints.provider_timeout must be from 1 s to constraints.timeout",
                              "constraints.provider_timeout")
    if constraints.get("max_cost") is not None and not _is_number(constraints["max_cost"]):
        raise ValidationError("constraints.max_cost must be a number", "constraints.max_cost")
    providers = constraints.get("providers")
    if providers is not None and not isinstance(providers, list):
        raise ValidationError("constraints.providers must be an array", "constraints.providers")

    metadata = _object(_required(doc, "metadata", "metadata"), "metadata", None)  # free-form, kept as signed
    if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", "metadata")
    nonce = _string(_required(metadata, "nonce", "metadata.nonce"), "metadata.nonce")
    if len(nonce) > 512:
        raise ValidationError("metadata.nonce must be at most 512 characters", "metadata.nonce")
    timestamp = _string(_required(metadata, "timestamp", "metadata.timestamp"), "metadata.timestamp")
    if metadata.get("tags") is not None:
        _string_list(metadata["tags"], "metadata.tags")

    models = _models(doc, default_model)
    question_ids: list[str] = []
    if doc.get("questions") is not None:
        question_ids = _string_list(doc["questions"], "questions")
        if catalogue is not None:
            unknown = [qid for qid in question_ids if qid not in catalogue]
            if unknown:
                raise ValidationError(f"questions: unknown question id {unknown[0]!r}", "questions")
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if not question_ids and catalogue is not None and isinstance(prompt, str) and prompt in catalogue:
        question_ids = [prompt]  # the portal puts a catalogue question id in input.data.prompt
    if not question_ids and not (isinstance(prompt, str) and prompt.strip()):
        raise ValidationError(
            "questions or benchmark.input.data.prompt is required", "questions", missing=True
        )
    if doc.get("runs") is not None and (not _is_int(doc["runs"]) or doc["runs"] < 0):
        raise ValidationError("runs must be a non-negative integer", "runs")
    if doc.get("created_at") is not None:
        _string(doc["created_at"], "created_at")
    if doc.get("wallet_auth") is not None:
        _object(doc["wallet_auth"], "wallet_auth", WALLET_AUTH_FIELDS)
    signature = _string(_required(doc, "signature", "signature"), "signature")
    public_key = _string(_required(doc, "public_key", "public_key"), "public_key")

    spec = JobSpec(
        id=job_id,
        regions=tuple(regions),
        min_regions=min_regions,
        min_success_rate=float(min_success_rate),
        timeout_ns=timeout_ns,
        provider_timeout_ns=provider_timeout_ns,
        models=models,
        question_ids=tuple(question_ids),
        prompt=prompt if isinstance(prompt, str) else None,
        nonce=nonce,
        timestamp=timestamp,
        public_key=public_key,
        signature=signature,
        document=doc,
    )
    if catalogue is not None:
        count = len(spec.units(catalogue))
        if count == 0:
            raise ValidationError("models[].regions leave no region for any model", "models")
        if count > max_units:
            raise ValidationError(
                f"the job has {count} units (regions × models × questions); at most {max_units} allowed",
                "constraints.regions",
            )
    return spec
