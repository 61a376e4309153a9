"""Subcommands that run a role: api, worker, beat, migrate, relay."""

from __future__ import annotations

import json
import sys

import click

from beacon.cli import main
from beacon.settings import Settings, get_settings


def require_runner_key(settings: Settings) -> None:
    """The roles that sign (api: tree heads; worker: receipts, bundles) refuse to start without a usable
    runner key: in production RUNNER_SIGNING_KEY must name a readable key file; elsewhere a configured
    file must load (the embedded default creates one). Exit 2 with ``Error: RUNNER_SIGNING_KEY: …``."""
    from beacon.cli import EXIT_CONFIGURATION
    from beacon.evidence.identity import RunnerKeyError, runner_identity
    from beacon.logs import configure_logging

    if settings.production and not settings.runner_signing_key:
        reason = ("is required in production (BEACON_ENV=production, or on Fly): the path of the runner's Ed25519 "
                  "key file (`beacon keygen`), the same file in every api and worker process")
    else:
        configure_logging(settings.log_level)  # the loader's warnings (a key others may read) as JSON
        try:
            runner_identity(settings)
            return
        except RunnerKeyError as exc:
            reason = str(exc).replace(" (RUNNER_SIGNING_KEY)", "")
    click.echo(f"Error: RUNNER_SIGNING_KEY: {reason}", err=True)
    sys.exit(EXIT_CONFIGURATION)


@main.command()
@click.option("--port", type=int, default=None, help="Port to listen on (default: PORT, 8090).")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--workers", type=int, default=None, help="gunicorn workers (default: WEB_CONCURRENCY, 2).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Port of the /metrics listener (default: METRICS_PORT, 9091; 0: none).")
def api(port: int | None, host: str, workers: int | None, metrics_port: int | None) -> None:
    """Serve the HTTP API under gunicorn (gevent workers) and /metrics on a listener of its own."""
    from beacon.observability.multiproc import prepare_metrics_dir

    prepare_metrics_dir()  # before anything imports prometheus_client (importing app does)
    from app.server import serve_api

    settings = get_settings()
    require_runner_key(settings)
    metrics = settings.metrics_port if metrics_port is None else metrics_port
    port = port or settings.port
    if metrics and metrics == port:
        raise click.BadParameter(f"the metrics port must differ from the API port ({port})",
                                 param_hint="--metrics-port / METRICS_PORT")
    serve_api(host, port, workers or settings.web_concurrency, metrics_port=metrics)


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
    require_runner_key(settings)
    wanted = tuple(r.strip() for r in regions.split(",") if r.strip()) or fly_regions(settings)
    queues = worker_queues(wanted, orchestration)
    from workers import app

    # --quiet: no banner on stdout; the worker logs it as one JSON line instead (celery_hooks).
    argv = ["--quiet", "worker", "-Q", ",".join(queues), "--pool", pool, "-c", str(concurrency), "-E",
            "--loglevel", get_settings().log_level]
    if hostname:
        argv += ["-n", hostname]
    app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run Celery beat (exactly one per deployment)."""
    from beat.app import app

    schedule = get_settings().data_dir / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["--quiet", "beat", "--loglevel", get_settings().log_level, "--schedule", str(schedule)])


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


