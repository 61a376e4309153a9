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
@click.option("--address", default=None, help="Address to listen on (default: FLOWER_ADDRESS, 127.0.0.1).")
def flower(port: int | None, address: str | None) -> None:
    """Run Flower (the Celery dashboard) against the broker, like ``celery -A workers flower``.

    Closed by default: it listens on 127.0.0.1 unless FLOWER_ADDRESS (or --address) says otherwise,
    and refuses to start without FLOWER_BASIC_AUTH (user:pass[,user:pass]) unless
    FLOWER_ALLOW_ANONYMOUS=true. Flower reads the credentials from the environment itself, so the
    passwords never appear on a command line.
    """
    from beacon.cli import EXIT_CONFIGURATION

    settings = get_settings()
    if not settings.flower_basic_auth and not settings.flower_allow_anonymous:
        click.echo("Error: FLOWER_BASIC_AUTH: is required: user:password[,user:password] for Flower's dashboard "
                   "and API (FLOWER_ALLOW_ANONYMOUS=true runs it without, on a laptop)", err=True)
        sys.exit(EXIT_CONFIGURATION)
    address = address or settings.flower_address
    from workers import app

    if not settings.flower_basic_auth:
        log.warning("Flower runs without authentication (FLOWER_ALLOW_ANONYMOUS=true)", extra={"address": address})
    app.start(["flower", f"--port={port or settings.flower_port}", f"--address={address}"])


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
