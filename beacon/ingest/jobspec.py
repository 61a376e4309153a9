"""The JobSpec: the Go runner's format, validated with errors that name the field.

``parse_jobspec`` checks the schema of a decoded document and returns a ``JobSpec`` with the
Go runner's defaults applied. Signatures are ``beacon.crypto.signing``'s concern; trust, time and
replay are the ingest service's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from beacon.errors import ValidationError
from beacon.ids import MAX_JOB_ID_LENGTH, is_job_id
from beacon.region_names import canonical_region

NS_PER_SECOND = 1_000_000_000
#: A duration below this is seconds; at or above it, Go's integer nanoseconds (the portal sends 600000000000).
SECONDS_BELOW = 1_000_000
DEFAULT_TIMEOUT_NS = 10 * 60 * NS_PER_SECOND
DEFAULT_PROVIDER_TIMEOUT_NS = 2 * 60 * NS_PER_SECOND
MIN_TIMEOUT_NS = 30 * NS_PER_SECOND
MAX_TIMEOUT_NS = 60 * 60 * NS_PER_SECOND
MIN_PROVIDER_TIMEOUT_NS = 1 * NS_PER_SECOND
MAX_PROVIDER_TIMEOUT_NS = 60 * 60 * NS_PER_SECOND
DEFAULT_MIN_REGIONS = 3
DEFAULT_MIN_SUCCESS_RATE = 0.67
PROMPT_QUESTION_ID = "prompt"

# Structural caps, checked before anything proportional to them.
MAX_MODELS = 64
MAX_QUESTIONS = 256
MAX_REGIONS = 16
# String lengths: what the database columns hold (``beacon.models``), or a sane bound.
MAX_MODEL_ID_LENGTH = 256  # executions.model_id
MAX_QUESTION_ID_LENGTH = 256  # executions.question_id
MAX_REGION_LENGTH = 64  # executions.region
MAX_NONCE_LENGTH = 512  # nonces.nonce
MAX_PUBLIC_KEY_LENGTH = 64  # jobs.public_key, nonces.public_key (standard base64 of 32 bytes: 44)
MAX_SIGNATURE_LENGTH = 128  # standard base64 of 64 bytes: 88
MAX_NAME_LENGTH = 256  # models[].name, models[].provider, models[].container_image
MAX_METADATA_BYTES = 64 * 1024  # free-form metadata, kept as signed

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

    def unit_count(self) -> int:
        """``len(self.units(...))`` without building them."""
        questions = len(self.question_ids) or 1
        return questions * sum(
            len(self.regions) if model.regions is None else sum(1 for region in self.regions if region in model.regions)
            for model in self.models
        )

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
        raise ValidationError(f"{path} must be an object" if path else "the JobSpec must be a JSON object", path or None)
    if allowed is not None:
        unknown = sorted(set(value) - allowed)
        if unknown:
            prefix = f"{path}." if path else ""
            raise ValidationError(
                f"unknown field {prefix}{unknown[0] or chr(34) * 2} (allowed: {', '.join(sorted(allowed))})",
                f"{prefix}{unknown[0]}",
            )
    return value


def _required(obj: dict[str, Any], key: str, path: str) -> Any:
    value = obj.get(key)
    if value is None or value == "":
        raise ValidationError(f"{path} is required", path, missing=True)
    return value


def _string(value: Any, path: str, max_length: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{path} must be a string", path)
    if max_length is not None and len(value) > max_length:
        raise ValidationError(f"{path} must be at most {max_length} characters", path)
    return value


def _optional_object(obj: dict[str, Any], key: str, path: str, allowed: set[str] | None) -> dict | None:
    value = obj.get(key)
    return None if value is None else _object(value, path, allowed)


def _string_list(value: Any, path: str, max_length: int | None = None) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError(f"{path} must be an array of non-empty strings", path)
    if max_length is not None and any(len(item) > max_length for item in value):
        raise ValidationError(f"{path}: each entry must be at most {max_length} characters", path)
    if len(set(value)) != len(value):
        raise ValidationError(f"{path} must not repeat an entry", path)
    return value


def _duration(constraints: dict[str, Any], key: str, default: int, low: int, high: int, allowed: str) -> int:
    """Nanoseconds from ``low`` to ``high``; absent or 0 gives ``default``. A value below
    SECONDS_BELOW is seconds, anything larger Go's integer nanoseconds."""
    value = constraints.get(key)
    if value is None or value == 0:
        return default
    if _is_number(value) and 0 < value < SECONDS_BELOW:
        value = int(value * NS_PER_SECOND)
    if not _is_int(value) or not low <= value <= high:
        raise ValidationError(f"constraints.{key} must be from {allowed} (seconds below {SECONDS_BELOW}, "
                              "else integer nanoseconds)", f"constraints.{key}")
    return value


def _region_list(value: Any, path: str) -> list[str]:
    """Canonical region names (``beacon.region_names``); two spellings of one region are a duplicate."""
    names = [canonical_region(name) for name in _string_list(value, path, MAX_REGION_LENGTH)]
    if len(set(names)) != len(names):
        raise ValidationError(f"{path} names a region twice (ASIA is APAC)", path)
    return names


def _check_caps(doc: dict[str, Any]) -> None:
    """Array sizes first, before any work proportional to them (or to their product, the units)."""
    constraints, metadata = doc.get("constraints"), doc.get("metadata")
    arrays = (
        ("models", doc.get("models"), MAX_MODELS),
        ("metadata.models", metadata.get("models") if isinstance(metadata, dict) else None, MAX_MODELS),
        ("questions", doc.get("questions"), MAX_QUESTIONS),
        ("constraints.regions", constraints.get("regions") if isinstance(constraints, dict) else None, MAX_REGIONS),
    )
    for path, value, limit in arrays:
        if isinstance(value, list) and len(value) > limit:
            raise ValidationError(f"{path} has {len(value)} entries; at most {limit} allowed", path)


def _model(item: Any, path: str) -> ModelRef:
    if isinstance(item, str) and item:
        return ModelRef(_string(item, path, MAX_MODEL_ID_LENGTH))
    entry = _object(item, path, MODEL_FIELDS)
    model_id = _string(_required(entry, "id", f"{path}.id"), f"{path}.id", MAX_MODEL_ID_LENGTH)
    regions = entry.get("regions")
    if isinstance(regions, list) and len(regions) > MAX_REGIONS:
        raise ValidationError(f"{path}.regions has {len(regions)} entries; at most {MAX_REGIONS} allowed",
                              f"{path}.regions")
    if entry.get("container_image") is not None:
        _string(entry["container_image"], f"{path}.container_image", MAX_NAME_LENGTH)
    return ModelRef(
        model_id,
        name=None if entry.get("name") is None else _string(entry["name"], f"{path}.name", MAX_NAME_LENGTH),
        provider=None if entry.get("provider") is None else _string(entry["provider"], f"{path}.provider",
                                                                    MAX_NAME_LENGTH),
        regions=None if regions is None else tuple(_region_list(regions, f"{path}.regions")),
    )


def _models(doc: dict[str, Any], default_model: str) -> tuple[ModelRef, ...]:
    raw = doc.get("models")
    if raw is None:
        raw = (doc.get("metadata") or {}).get("models")
    if raw is None or raw == []:
        return (ModelRef(default_model),)
    if not isinstance(raw, list):
        raise ValidationError("models must be an array of model ids or objects", "models")
    models = tuple(_model(item, f"models[{index}]") for index, item in enumerate(raw))
    ids = [model.id for model in models]
    if len(set(ids)) != len(ids):
        raise ValidationError("models must not repeat a model id", "models")
    return models


def _job_id(doc: dict[str, Any]) -> str | None:
    """A signed ``jobspec_id`` first, then ``id``; none → the runner generates one."""
    job_id = doc.get("jobspec_id") or doc.get("id")
    if not job_id:
        return None
    job_id = _string(job_id, "id")
    if not is_job_id(job_id):
        raise ValidationError(
            f"id must be 1 to {MAX_JOB_ID_LENGTH} characters of letters, digits and . _ : -", "id"
        )
    return job_id


def _benchmark(doc: dict[str, Any]) -> Any:
    """Check the benchmark object; returns ``benchmark.input.data``."""
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
    return data


def _regions(constraints: dict[str, Any], known_regions: Iterable[str] | None) -> list[str]:
    regions = _region_list(_required(constraints, "regions", "constraints.regions"), "constraints.regions")
    if known_regions is not None:
        known = set(known_regions)
        missing = [region for region in regions if region not in known]
        if missing:
            raise ValidationError(
                f"constraints.regions: no provider is configured for region {missing[0]} "
                f"(configured: {', '.join(sorted(known))})",
                "constraints.regions",
            )
    return regions


@dataclass(frozen=True)
class _Constraints:
    regions: list[str]
    min_regions: int
    min_success_rate: float
    timeout_ns: int
    provider_timeout_ns: int


def _success_rate(constraints: dict[str, Any]) -> float:
    rate = constraints.get("min_success_rate")
    if rate is None or rate == 0:  # Go's rule: Go-signed specs always carry zeros
        return DEFAULT_MIN_SUCCESS_RATE
    if not _is_number(rate) or not 0 <= rate <= 1:
        raise ValidationError(
            "constraints.min_success_rate must be a number from 0 to 1", "constraints.min_success_rate"
        )
    return float(rate)


def _constraints(doc: dict[str, Any], known_regions: Iterable[str] | None) -> _Constraints:
    constraints = _object(_required(doc, "constraints", "constraints"), "constraints", CONSTRAINT_FIELDS)
    regions = _regions(constraints, known_regions)
    min_regions = constraints.get("min_regions")
    if min_regions is None or min_regions == 0:
        min_regions = DEFAULT_MIN_REGIONS
    elif not _is_int(min_regions) or min_regions < 0:
        raise ValidationError("constraints.min_regions must be a non-negative integer", "constraints.min_regions")
    min_success_rate = _success_rate(constraints)
    timeout_ns = _duration(constraints, "timeout", DEFAULT_TIMEOUT_NS, MIN_TIMEOUT_NS, MAX_TIMEOUT_NS, "30 s to 60 min")
    provider_timeout_ns = _duration(constraints, "provider_timeout", DEFAULT_PROVIDER_TIMEOUT_NS,
                                    MIN_PROVIDER_TIMEOUT_NS, MAX_PROVIDER_TIMEOUT_NS, "1 s to 60 min")
    if provider_timeout_ns > timeout_ns:
        raise ValidationError("constraints.provider_timeout must not exceed constraints.timeout",
                              "constraints.provider_timeout")
    if constraints.get("max_cost") is not None and not _is_number(constraints["max_cost"]):
        raise ValidationError("constraints.max_cost must be a number", "constraints.max_cost")
    providers = constraints.get("providers")
    if providers is not None and not isinstance(providers, list):
        raise ValidationError("constraints.providers must be an array", "constraints.providers")
    return _Constraints(regions, min_regions, min_success_rate, timeout_ns, provider_timeout_ns)


def _metadata(doc: dict[str, Any]) -> tuple[str, str]:
    """(nonce, timestamp) of the metadata object, checked."""
    metadata = _object(_required(doc, "metadata", "metadata"), "metadata", None)  # free-form, kept as signed
    if len(json.dumps(metadata, ensure_ascii=False).encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise ValidationError(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON", "metadata")
    nonce = _string(_required(metadata, "nonce", "metadata.nonce"), "metadata.nonce", MAX_NONCE_LENGTH)
    timestamp = _string(_required(metadata, "timestamp", "metadata.timestamp"), "metadata.timestamp")
    if metadata.get("tags") is not None:
        _string_list(metadata["tags"], "metadata.tags")
    return nonce, timestamp


def _questions(doc: dict[str, Any], catalogue: dict[str, Any] | None) -> list[str]:
    if doc.get("questions") is None:
        return []
    question_ids = _string_list(doc["questions"], "questions", MAX_QUESTION_ID_LENGTH)
    if catalogue is not None:
        unknown = [qid for qid in question_ids if qid not in catalogue]
        if unknown:
            raise ValidationError(f"questions: unknown question id {unknown[0]!r}", "questions")
    return question_ids


def _prompt(data: Any, question_ids: list[str], catalogue: dict[str, Any] | None) -> str | None:
    """The free prompt; a catalogue question id there (as the portal sends) joins ``question_ids``."""
    prompt = data.get("prompt") if isinstance(data, dict) else None
    if not question_ids and catalogue is not None and isinstance(prompt, str) and prompt in catalogue:
        question_ids.append(prompt)
    if not question_ids and not (isinstance(prompt, str) and prompt.strip()):
        raise ValidationError(
            "questions or benchmark.input.data.prompt is required", "questions", missing=True
        )
    return prompt if isinstance(prompt, str) else None


def _signature_fields(doc: dict[str, Any]) -> tuple[str, str]:
    """(signature, public_key), after the optional top-level scalars."""
    if doc.get("runs") is not None and (not _is_int(doc["runs"]) or doc["runs"] < 0):
        raise ValidationError("runs must be a non-negative integer", "runs")
    if doc.get("created_at") is not None:
        _string(doc["created_at"], "created_at")
    if doc.get("wallet_auth") is not None:
        _object(doc["wallet_auth"], "wallet_auth", WALLET_AUTH_FIELDS)
    signature = _string(_required(doc, "signature", "signature"), "signature", MAX_SIGNATURE_LENGTH)
    public_key = _string(_required(doc, "public_key", "public_key"), "public_key", MAX_PUBLIC_KEY_LENGTH)
    return signature, public_key


def _check_units(spec: JobSpec, max_units: int) -> None:
    count = spec.unit_count()
    if count == 0:
        raise ValidationError("models[].regions leave no region for any model", "models")
    if count > max_units:
        raise ValidationError(
            f"the job has {count} units (regions × models × questions); at most {max_units} allowed",
            "constraints.regions",
        )


def parse_jobspec(
    doc: Any,
    *,
    default_model: str = "llama3.2-1b",
    catalogue: dict[str, Any] | None = None,
    known_regions: Iterable[str] | None = None,
    max_units: int = 500,
) -> JobSpec:
    """Validate a decoded JobSpec and apply the Go runner's defaults.

    Raises ``ValidationError`` naming the first offending field. Array sizes are checked first,
    then each part in document order; strings that land in a database column are limited to it.
    """
    doc = _object(doc, "", TOP_FIELDS)
    _check_caps(doc)
    job_id = _job_id(doc)
    _string(_required(doc, "version", "version"), "version")
    data = _benchmark(doc)
    constraints = _constraints(doc, known_regions)
    nonce, timestamp = _metadata(doc)
    models = _models(doc, default_model)
    question_ids = _questions(doc, catalogue)
    prompt = _prompt(data, question_ids, catalogue)
    signature, public_key = _signature_fields(doc)
    spec = JobSpec(
        id=job_id,
        regions=tuple(constraints.regions),
        min_regions=constraints.min_regions,
        min_success_rate=constraints.min_success_rate,
        timeout_ns=constraints.timeout_ns,
        provider_timeout_ns=constraints.provider_timeout_ns,
        models=models,
        question_ids=tuple(question_ids),
        prompt=prompt,
        nonce=nonce,
        timestamp=timestamp,
        public_key=public_key,
        signature=signature,
        document=doc,
    )
    if catalogue is not None:
        _check_units(spec, max_units)
    return spec
