"""The ``beacon`` command: the entry point of every role and tool.

Each area has its own module of subcommands; this one assembles the group.
"""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="beacon-runner")
def main() -> None:
    """Beacon Runner: signed multi-region AI benchmark jobs."""


from beacon.cli import admin, demo, evidence, keys, observability, roles  # noqa: E402  (each module adds its commands to main)

__all__ = ["main", "admin", "demo", "evidence", "keys", "observability", "roles"]
