"""Schemathesis against /openapi.json: generated requests to every documented operation (a bounded
number of examples each) must never answer 5xx, and every answer must be one the document
describes (status, content type, body schema). The real app on real Postgres and Redis.

``/admin/test-sentry`` is left out: it answers 500 on purpose. Each operation is fuzzed with valid
data (what the schema allows) and invalid data (what it forbids, where a parameter or body can be
made invalid). The admin operations run with a
valid admin token (the roleToken scheme) and without one (401). Run more examples by hand with
``FUZZ_EXAMPLES=500 bash scripts/test tests/integration/test_fuzz_api.py``.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from beacon.crypto.signing import KeyPair
from beacon.settings import Settings
from tests.conftest import REDIS_BASE_URL, REDIS_IDLE_DB, REDIS_LIMITS_DB

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
ADMIN = "admin-fuzz"
# /admin/test-sentry answers 500 on purpose; /openapi.json is the document itself.
EXCLUDED = ["/admin/test-sentry", "/openapi.json"]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(pg_url, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    keys = tmp / "trusted.json"
    keys.write_text(json.dumps([{"kid": "fuzz", "public_key": KeyPair.generate().public_key_b64, "status": "active"}]))
    flask_app = create_app(Settings.from_env({
        "BEACON_DATA_DIR": str(tmp / "data"), "DATABASE_URL": pg_url, "TRUSTED_KEYS_FILE": str(keys),
        "CELERY_BROKER_URL": f"{REDIS_BASE_URL}/{REDIS_IDLE_DB}", "RATE_LIMIT_REDIS_URL": f"{REDIS_BASE_URL}/{REDIS_LIMITS_DB}",
        "ADMIN_TOKENS": ADMIN, "RATE_LIMIT_DEFAULT": "off", "LOG_LEVEL": "CRITICAL",
        "RATE_LIMIT_IP_PER_MINUTE": "100000", "RATE_LIMIT_KEY_PER_MINUTE": "100000",
    }))
    return schemathesis.openapi.from_wsgi("/openapi.json", flask_app).exclude(path=EXCLUDED)


def labels() -> list[str]:
    """Every documented operation ("GET /api/v1/jobs"), read from the document itself at collection."""
    from app.openapi import document

    found = schemathesis.openapi.from_dict(document()).exclude(path=EXCLUDED)
    return sorted(result.ok().label for result in found.get_all_operations())


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("label", labels())
def test_every_operation_answers_within_its_documentation(api_schema, label, mode):
    [operation] = [result.ok() for result in api_schema.get_all_operations() if result.ok().label == label]
    headers = {"Authorization": f"Bearer {ADMIN}"} if operation.path.startswith("/admin/") else None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case) -> None:  # noqa: ANN001
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        pytest.skip("no parameter of this operation can be made invalid (strings in the path, no body)")
