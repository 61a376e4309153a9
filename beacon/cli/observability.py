"""Subcommands for operators: ``beacon flower`` and ``beacon sentry-test``."""

from __future__ import annotations

import json
import logging
import sys

import click

from beacon.cli import main
from beacon.settings import get_settings

log = logging.getLogger(__name__)


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: FLOWER_PORT, 5555).")
def flower(port: int | None) -> None:
    """Run Flower (the Celery dashboard) against the broker, like ``celery -A workers flower``.

    Basic auth comes from FLOWER_BASIC_AUTH (user:pass[,user:pass]), which Flower reads from the
    environment itself, so the passwords never appear on a command line.
    """
    settings = get_settings()
    from workers import app

    if not settings.flower_basic_auth:
        log.warning("Flower runs without authentication: set FLOWER_BASIC_AUTH=user:password")
    app.start(["flower", f"--port={port or settings.flower_port}"])


@main.command("sentry-test")
def sentry_test() -> None:
    """Send a test exception to Sentry and print its event id (exit 1 when SENTRY_DSN is not set)."""
    import sentry_sdk

    from beacon.logs import configure_logging
    from beacon.observability.sentry import capture_test_exception, init_sentry

    settings = get_settings()
    configure_logging(settings.log_level)
    if not init_sentry(settings, "cli"):
        click.echo("Sentry is disabled: set SENTRY_DSN", err=True)
        sys.exit(1)
    event_id = capture_test_exception("beacon sentry-test")
    sentry_sdk.flush(timeout=10)
    click.echo(json.dumps({"event_id": event_id}))
