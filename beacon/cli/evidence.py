"""Subcommands for evidence: ``beacon ipfs cid`` and ``beacon verify-proof``."""

from __future__ import annotations

import sys

import click

from beacon.cli import main
from beacon.cli.keys import read_json_file


@main.group()
def ipfs() -> None:
    """IPFS content identifiers, computed locally."""


@ipfs.command("cid")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--cid-version", type=click.Choice(["0", "1"]), default="0", show_default=True,
              help="0: Qm… (Kubo's default); 1: the base32 CIDv1 of the same DAG.")
def ipfs_cid(file: str, cid_version: str) -> None:
    """Print the CID `ipfs add` gives FILE with Kubo's defaults (alone on the last line)."""
    from beacon.evidence.cid import add_file

    dag = add_file(file, keep_blocks=False)
    click.echo(dag.root if cid_version == "0" else dag.root_v1)


@main.command("verify-proof")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", default=None,
              help="The runner's public key (GET /api/v1/runner/identity) the tree heads must be signed by.")
def verify_proof(file: str, public_key: str | None) -> None:
    """Check a transparency inclusion or consistency proof offline; exit 0 only if it verifies."""
    from beacon.evidence.transparency import verify_proof_document

    try:
        summary = verify_proof_document(read_json_file(file), public_key)
    except ValueError as exc:
        click.echo(f"INVALID: {exc}")
        sys.exit(1)
    click.echo(f"OK: {summary}")
    if public_key is None:
        click.echo("note: tree heads were checked against the key they carry; pass --public-key to pin the runner's")
