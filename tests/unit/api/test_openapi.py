"""Every route of the app is documented in /openapi.json."""

from __future__ import annotations

import re

from app import create_app
from app.openapi import document


def test_every_route_is_documented(make_settings):
    flask_app = create_app(make_settings(TRUST_ENFORCE="false"))
    documented = {(path, method) for path, ops in document()["paths"].items() for method in ops}
    missing = []
    for rule in flask_app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if (path, method.lower()) not in documented:
                missing.append(f"{method} {path}")
    assert not missing, f"routes without OpenAPI documentation: {missing}"


def test_documented_paths_exist(make_settings):
    flask_app = create_app(make_settings(TRUST_ENFORCE="false"))
    rules = {re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", r.rule) for r in flask_app.url_map.iter_rules()}
    assert set(document()["paths"]) <= rules
    client = flask_app.test_client()
    assert client.get("/openapi.json").get_json()["openapi"].startswith("3.")


def test_the_security_schemes_are_documented():
    doc = document()
    assert doc["components"]["securitySchemes"]["roleToken"] == {
        **doc["components"]["securitySchemes"]["roleToken"], "type": "http", "scheme": "bearer"}
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/admin/"):
                assert operation["security"] == [{"roleToken": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
            elif path == "/api/v1/jobs/{job_id}/cancel":
                assert operation["security"] == [{"roleToken": []}, {}]
            else:
                assert "security" not in operation, (method, path)
