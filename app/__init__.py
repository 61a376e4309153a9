"""The HTTP API: a thin Flask app over the core package's services."""

from __future__ import annotations

from flask import Flask

from app import (
    admin,
    browser,
    client,
    errors,
    evidence,
    health,
    jobs,
    live,
    openapi,
    ops,
    pages,
    portal,
    ratelimit,
    serving,
)
from app.services import Services
from beacon.logs import configure_logging
from beacon.observability.sentry import init_sentry
from beacon.settings import Settings, get_settings

# Each module has a Blueprint ``bp`` and documents its routes in ``OPENAPI``.
BLUEPRINT_MODULES = (ops, health, jobs, openapi, admin, evidence, live, portal, pages)  # ops first: its request hooks run first


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    init_sentry(settings, "api")
    flask_app = Flask(__name__)
    flask_app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    flask_app.json.sort_keys = False
    flask_app.extensions["beacon"] = Services.build(settings)
    errors.register(flask_app)
    for module in BLUEPRINT_MODULES:
        flask_app.register_blueprint(module.bp)
    # After the blueprints: ops' request hooks (request id) run before the rate limit's.
    client.init_app(flask_app, settings)
    serving.init_app(flask_app, settings)  # liveness before the app; requests in flight per client address
    ratelimit.init_app(flask_app, settings)
    browser.init_app(flask_app, settings)
    return flask_app
