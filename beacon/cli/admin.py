"""``beacon admin …``: the admin HTTP API from a terminal (queues, stuck, republish, emergency-stop,
reload-keys).

It calls the API rather than the database so that the same role tokens authorise it, every
action is logged by the API with who did it, and ``reload-keys`` reaches the API's own trusted
keys. Point it at a deployment with ``--url``/``BEACON_URL`` and ``--token``/``BEACON_TOKEN``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from beacon.cli import main
from beacon.settings import get_settings


@main.group()
@click.option("--url", envvar="BEACON_URL", default=None, help="API base URL (default: http://127.0.0.1:PORT).")
@click.option("--token", envvar="BEACON_TOKEN", default=None,
              help="A viewer, operator or admin token (default: BEACON_TOKEN).")
@click.pass_context
def admin(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Operate a running deployment through the admin API."""
    ctx.obj = {"url": (url or f"http://127.0.0.1:{get_settings().port}").rstrip("/"), "token": token}


def call(ctx: click.Context, method: str, path: str, **kwargs: Any) -> None:
    """Send one admin request, print the JSON answer; exit 1 unless it is a 2xx."""
    import requests

    url, token = ctx.obj["url"], ctx.obj["token"]
    if not token:
        raise click.UsageError("an admin API token is needed: pass --token or set BEACON_TOKEN")
    try:
        response = requests.request(method, f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                                    timeout=30, **kwargs)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise click.ClickException(f"{response.status_code} from {url}{path}: {response.text[:500]}") from None
    click.echo(json.dumps(body, indent=2))
    if not response.ok:
        sys.exit(1)


@admin.command()
@click.pass_context
def queues(ctx: click.Context) -> None:
    """Queue depths, outbox backlog and dead letters (viewer)."""
    call(ctx, "GET", "/admin/queues")


@admin.command()
@click.option("--minutes", type=click.IntRange(min=1), default=30, show_default=True,
              help="Queued or running for longer than this.")
@click.pass_context
def stuck(ctx: click.Context, minutes: int) -> None:
    """Jobs queued or running for too long (viewer)."""
    call(ctx, "GET", "/admin/jobs/stuck", params={"minutes": minutes})


@admin.command()
@click.argument("job_id")
@click.pass_context
def republish(ctx: click.Context, job_id: str) -> None:
    """Send a queued job's run_job, or a running job's lost units, again (operator)."""
    call(ctx, "POST", f"/admin/jobs/{job_id}/republish")


@admin.command("emergency-stop")
@click.argument("job_id")
@click.option("--reason", required=True, help="Why; recorded on the job and every unit it stops.")
@click.pass_context
def emergency_stop(ctx: click.Context, job_id: str, reason: str) -> None:
    """Fail a job and its open units now (admin)."""
    call(ctx, "POST", f"/admin/jobs/{job_id}/emergency-stop", json={"reason": reason})


@admin.command("reload-keys")
@click.pass_context
def reload_keys(ctx: click.Context) -> None:
    """Make the API re-read TRUSTED_KEYS_FILE now (admin)."""
    call(ctx, "POST", "/admin/trusted-keys/reload")
