"""Subcommands for keys, signatures and submissions: keygen, sign, verify, submit."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click

from beacon.cli import main
from beacon.settings import get_settings


@main.command()
@click.option("--out", "out", type=click.Path(dir_okay=False), default="beacon-key", show_default=True,
              help="Private key file; the public key goes to <out>.pub.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
def keygen(out: str, force: bool) -> None:
    """Write a new Ed25519 key pair."""
    from beacon.crypto.signing import KeyPair

    if Path(out).exists() and not force:
        raise click.ClickException(f"{out} exists; pass --force to overwrite it")
    pair = KeyPair.generate()
    pair.save(out)
    click.echo(f"private key: {out}\npublic key:  {out}.pub\n{pair.public_key_b64}")


def read_json_file(path: str) -> dict:
    from beacon.crypto.canonical import loads

    try:
        doc = loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise click.ClickException(f"{path}: must hold a JSON object")
    return doc


def prepare_spec(doc: dict, key_path: str, nonce: str | None = None, timestamp: str | None = None) -> dict:
    """Fill id, nonce and timestamp (fresh unless given) and sign the spec with the key file."""
    from beacon.crypto.signing import KeyPair, sign_document
    from beacon.timeutil import isoformat, utcnow

    pair = KeyPair.load(key_path)
    doc = dict(doc)
    doc.setdefault("id", f"job-{uuid.uuid4()}")
    metadata = dict(doc.get("metadata") or {})
    metadata["nonce"] = nonce or uuid.uuid4().hex
    metadata["timestamp"] = timestamp or isoformat(utcnow().replace(microsecond=0))
    doc["metadata"] = metadata
    return sign_document(doc, pair.signing_key)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--nonce", default=None, help="Nonce to sign (default: fresh).")
@click.option("--timestamp", default=None, help="RFC 3339 timestamp to sign (default: now).")
@click.option("--out", default="-", show_default=True, help="Where to write the signed spec.")
def sign(file: str, key_path: str, nonce: str | None, timestamp: str | None, out: str) -> None:
    """Sign a JobSpec (fresh nonce and timestamp unless given)."""
    signed = json.dumps(prepare_spec(read_json_file(file), key_path, nonce, timestamp), indent=2, ensure_ascii=False)
    if out == "-":
        click.echo(signed)
    else:
        Path(out).write_text(signed + "\n")
        click.echo(f"signed spec written to {out}", err=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--public-key", default=None,
              help="Require this signer (standard base64), e.g. the runner's from GET /api/v1/runner/identity.")
def verify(file: str, public_key: str | None) -> None:
    """Check a signed document's signature (not schema, trust or time); exit 0 only if it verifies.

    A JobSpec (also wrapped as the portal's cross-region request ``{"jobspec": …}``), or a
    receipt, evidence bundle or tree head the runner signed (those only in the current canonical
    form). A JobSpec's ``wallet_auth`` is checked too (its expiry is not: that is ingest's rule)."""
    from beacon.crypto.signing import verify_document
    from beacon.evidence.identity import RUNNER_KINDS, verify_runner_document
    from beacon.ingest.wallet import WalletAuthInvalid, verify_wallet_auth
    from beacon.timeutil import utcnow

    doc = read_json_file(file)
    if isinstance(doc.get("jobspec"), dict) and "signature" not in doc:
        click.echo("the jobspec of a cross-region request:")
        doc = doc["jobspec"]
    try:
        if doc.get("kind") in RUNNER_KINDS:
            kid = verify_runner_document(doc, doc["kind"], public_key)
            click.echo(f"OK: {doc['kind']} signature verifies (runner key {kid})")
            return
        form = verify_document(doc)
    except ValueError as exc:
        click.echo(f"INVALID: {exc}")
        sys.exit(1)
    if form is None:
        click.echo("INVALID: the signature matches no accepted form")
        sys.exit(1)
    if public_key is not None and doc.get("public_key") != public_key:
        click.echo("INVALID: signed by another key than --public-key")
        sys.exit(1)
    click.echo(f"OK: signature verifies ({form} form)")
    if doc.get("wallet_auth") is not None:
        try:
            address = verify_wallet_auth(doc["wallet_auth"], doc.get("public_key"), utcnow(), check_expiry=False)
        except WalletAuthInvalid as exc:
            click.echo(f"INVALID: wallet_auth: {exc.reason}")
            sys.exit(1)
        click.echo(f"OK: wallet_auth recovers {address}")


def post_job(base: str, doc: dict, idempotency_key: str | None = None):
    """POST a signed spec; returns the response (raises ClickException when the API is unreachable)."""
    import requests

    headers = {"Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    body = json.dumps(doc, ensure_ascii=False).encode()
    try:
        return requests.post(f"{base}/api/v1/jobs", data=body, headers=headers, timeout=30)
    except requests.RequestException as exc:
        raise click.ClickException(f"cannot reach {base}: {exc}") from None


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--key", "key_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Sign with this key first (needed unless FILE is already signed).")
@click.option("--url", envvar="BEACON_URL", default=None, help="API base URL (default: http://127.0.0.1:PORT).")
@click.option("--idempotency-key", default=None)
@click.option("--follow/--no-follow", default=True, show_default=True,
              help="Follow the job until it ends and print its answers.")
def submit(file: str, key_path: str | None, url: str | None, idempotency_key: str | None, follow: bool) -> None:
    """Submit a JobSpec (signing it first with --key), follow it, print answers per question × region."""
    from rich.console import Console

    from beacon.cli.follow import answers_table, follow_job

    doc = read_json_file(file)
    if key_path:
        doc = prepare_spec(doc, key_path)
    elif not doc.get("signature"):
        raise click.ClickException("the spec is not signed; pass --key")
    base = url or f"http://127.0.0.1:{get_settings().port}"
    response = post_job(base, doc, idempotency_key)
    click.echo(f"{response.status_code} {response.text.strip()}")
    if response.status_code not in (200, 202):
        sys.exit(1)
    if not follow:
        return
    console = Console()
    job = follow_job(base, response.json()["id"], console)
    console.print(answers_table(job))
    sys.exit(0 if job["status"] == "completed" else 1)


@main.command()
@click.argument("job_id")
@click.option("--url", envvar="BEACON_URL", default=None, help="API base URL (default: http://127.0.0.1:PORT).")
def watch(job_id: str, url: str | None) -> None:
    """Follow a job live from its events (a progress bar per region), then print its answers.
    Exit 0 when it completed, 1 otherwise."""
    from rich.console import Console

    from beacon.cli.follow import answers_table, watch_job

    console = Console()
    job = watch_job((url or f"http://127.0.0.1:{get_settings().port}").rstrip("/"), job_id, console)
    console.print(answers_table(job))
    sys.exit(0 if job["status"] == "completed" else 1)
