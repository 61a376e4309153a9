"""Subcommands that run a role: api, worker, beat, migrate, relay."""

from __future__ import annotations

import json
import sys

import click

from beacon.cli import main
from beacon.settings import Settings, get_settings


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: PORT, 8090).")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--workers", type=int, default=None, help="gunicorn workers (default: WEB_CONCURRENCY, 2).")
def api(port: int | None, host: str, workers: int | None) -> None:
    """Serve the HTTP API under gunicorn."""
    from app.server import serve_api

    settings = get_settings()
    serve_api(host, port or settings.port, workers or settings.web_concurrency)


def worker_queues(regions: tuple[str, ...], orchestration: bool) -> list[str]:
    from beacon.execution.regions import region_names
    from beacon.messaging.celery_app import JOBS_QUEUE, region_queue

    configured = region_names(get_settings())
    unknown = [region for region in regions if region not in configured]
    if unknown:
        raise click.BadParameter(
            f"no provider is configured for region {unknown[0]} (configured: {', '.join(configured)})",
            param_hint="--regions",
        )
    queues = [region_queue(region) for region in (regions or configured)]
    return ([JOBS_QUEUE] if orchestration else []) + queues


def fly_regions(settings: Settings) -> tuple[str, ...]:
    """The regions WORKER_REGIONS_BY_FLY_REGION gives this machine's FLY_REGION (none without a map)."""
    mapping = settings.worker_regions_by_fly_region
    if not (settings.fly_region and mapping):
        return ()
    regions = tuple(region for fly, region in mapping if fly == settings.fly_region)
    if not regions:
        raise click.UsageError(
            f"FLY_REGION {settings.fly_region} is not in WORKER_REGIONS_BY_FLY_REGION (maps "
            f"{', '.join(sorted({fly for fly, _ in mapping}))}); add it there or set WORKER_REGIONS"
        )
    return regions


@main.command()
@click.option(
    "--regions", envvar="WORKER_REGIONS", default="",
    help="Comma list of regions to serve (default: WORKER_REGIONS_BY_FLY_REGION's for FLY_REGION, else all).",
)
@click.option("--orchestration/--no-orchestration", default=True, help="Also consume the jobs queue.")
@click.option("--concurrency", "-c", type=int, default=16, show_default=True, envvar="WORKER_CONCURRENCY")
@click.option("--pool", default="threads", show_default=True, type=click.Choice(["threads", "prefork", "solo"]))
@click.option("--hostname", "-n", default=None, help="Celery node name.")
def worker(regions: str, orchestration: bool, concurrency: int, pool: str, hostname: str | None) -> None:
    """Run a Celery worker on the jobs queue and the region queues."""
    settings = get_settings()
    wanted = tuple(r.strip() for r in regions.split(",") if r.strip()) or fly_regions(settings)
    queues = worker_queues(wanted, orchestration)
    from workers import app

    argv = ["worker", "-Q", ",".join(queues), "--pool", pool, "-c", str(concurrency), "-E", "--loglevel", get_settings().log_level]
    if hostname:
        argv += ["-n", hostname]
    app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run Celery beat (exactly one per deployment)."""
    from beat.app import app

    schedule = get_settings().data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel", get_settings().log_level, "--schedule", str(schedule)])


@main.command()
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option("--downgrade", "down_to", default=None, help="Downgrade to this revision instead (e.g. base).")
def migrate(revision: str, down_to: str | None) -> None:
    """Apply (or revert) database migrations."""
    from beacon import migrate as migrations

    url = get_settings().database_url
    if down_to:
        migrations.downgrade(url, down_to)
        click.echo(f"downgraded to {down_to}")
    else:
        migrations.upgrade(url, revision)
        click.echo(f"upgraded to {revision}")


@main.command()
def relay() -> None:
    """Publish unpublished outbox rows once (what beat does every few seconds)."""
    from beacon.db import get_database
    from beacon.messaging.outbox import celery_publisher
    from beacon.messaging.outbox import relay as run_relay
    from beacon.messaging.tracing import traced_publisher
    from workers import app

    result = run_relay(get_database(), traced_publisher(celery_publisher(app)))  # as beat's relay: each row
    # continues the trace stored with it
    click.echo(json.dumps({"published": result.published, "failed": result.failed}))
    sys.exit(1 if result.failed else 0)


