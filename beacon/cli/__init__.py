"""The ``beacon`` command: the entry point of every role and tool.

Each area has its own module of subcommands; this one assembles the group. Before any
subcommand runs, the configuration is read once: a variable with an unusable value stops the
command with one line, ``Error: <VARIABLE>: <reason>``, on stderr and exit status 2.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["api"] and "--help" not in sys.argv:
    # The API serves every connection on gevent (app.serving). Its monkey-patching must come before
    # any other import: psycopg, for one, picks a blocking C wait function when imported unpatched.
    from gevent import monkey

    monkey.patch_all()

import click  # noqa: E402

EXIT_CONFIGURATION = 2  # click's status for a usage error; a bad variable is one too


def check_configuration() -> None:
    """Read the settings from the environment; exit 2 with one line naming the bad variable."""
    from beacon.settings import Settings, SettingsError

    try:
        Settings.from_env()  # not get_settings(): nothing is cached for the command to reuse stale
    except SettingsError as exc:
        click.echo(f"Error: {exc.variable}: {exc.reason}", err=True)
        sys.exit(EXIT_CONFIGURATION)


@click.group()
@click.version_option(package_name="beacon-runner")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Beacon Runner: signed multi-region AI benchmark jobs."""
    if not ctx.resilient_parsing and "--help" not in sys.argv[1:]:
        check_configuration()


from beacon.cli import admin, demo, evidence, keys, model, observability, roles  # noqa: E402  (each module adds its commands to main)

__all__ = ["main", "admin", "demo", "evidence", "keys", "model", "observability", "roles"]
