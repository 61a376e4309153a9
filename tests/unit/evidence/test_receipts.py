"""Receipts, bundles, the runner key, the block store and the log frontier, without services.

Bundle CIDs are compared with Debian's ``ipfs_cid``, an implementation independent of beacon.evidence.cid.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from beacon.cli import main
from beacon.crypto.canonical import canonical_json, loads
from beacon.crypto.signing import KeyPair, b64encode, sign_document
from beacon.evidence import merkle
from beacon.evidence.blockstore import BlockCorrupt, BlockMissing, DirBlockStore, read_file
from beacon.evidence.bundles import bundle_bytes
from beacon.evidence.cid import build_dag
from beacon.evidence.identity import (
    EMBEDDED_KEY_FILE,
    RunnerIdentity,
    RunnerKeyError,
    runner_identity,
    verify_runner_document,
)
from beacon.evidence.receipts import build_receipt
from beacon.evidence.transparency import _push, frontier_root
from beacon.models import Execution, Job
from beacon.settings import SettingsError
from tests.support import ipfs_cid_of

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def identity(tmp_path) -> RunnerIdentity:
    return RunnerIdentity(KeyPair.generate(), tmp_path / "runner-key")


def execution(ident: int = 7, output: str = "Paris is the capital of France.") -> Execution:
    return Execution(id=ident, job_id="job-1", region="EU", served_region="EU", provider="openai",
                     model_id="llama3.2-1b", question_id="geography_basic", prompt="What is the capital of France?",
                     status="completed", classification="substantive", output=output, output_sha256="ab" * 32,
                     started_at=NOW, completed_at=NOW, duration_ms=12, attempts=1)


def job(**fields) -> Job:
    values = dict(id="job-1", status="completed", status_reason="3/3 units succeeded",
                  raw_body='{"id": "job-1", "signature": "x"}', analysis={"summary": {"overall_risk": "low"}})
    values.update(fields)
    return Job(**values)


# ----------------------------------------------------------------- receipts


def test_receipt_is_the_signed_execution_resource(identity):
    receipt = build_receipt(identity, execution(), NOW)
    assert receipt["kind"] == "execution_receipt" and receipt["id"] == 7 and receipt["job_id"] == "job-1"
    assert receipt["runner_key_id"] == identity.key_id and receipt["public_key"] == identity.public_key
    assert receipt["output"] == "Paris is the capital of France." and receipt["issued_at"] == "2026-11-28T12:00:00Z"
    assert verify_runner_document(receipt, "execution_receipt", identity.public_key) == identity.key_id
    # survives a round trip through its canonical text, as the API serves it
    assert verify_runner_document(loads(canonical_json(receipt)), "execution_receipt") == identity.key_id


@pytest.mark.parametrize("field, value", [("output", "Lyon is the capital of France."), ("region", "US"),
                                          ("status", "failed"), ("id", 8)])
def test_tampered_receipt_fails(identity, field, value):
    receipt = {**build_receipt(identity, execution(), NOW), field: value}
    with pytest.raises(ValueError, match="does not verify"):
        verify_runner_document(receipt, "execution_receipt")


def test_receipt_by_another_key_or_of_another_kind_fails(identity):
    receipt = build_receipt(identity, execution(), NOW)
    with pytest.raises(ValueError, match="not by the expected key"):
        verify_runner_document(receipt, "execution_receipt", KeyPair.generate().public_key_b64)
    with pytest.raises(ValueError, match="expected a document of kind 'evidence_bundle'"):
        verify_runner_document(receipt, "evidence_bundle")
    # a JobSpec-style legacy signature (signature fields removed) is not accepted for runner documents
    other = identity.keypair.signing_key.sign(canonical_json({k: v for k, v in receipt.items()
                                                              if k not in ("signature", "public_key")}))
    legacy = {**receipt, "signature": b64encode(other.signature)}
    with pytest.raises(ValueError, match="does not verify"):
        verify_runner_document(legacy, "execution_receipt")


def test_beacon_verify_command_checks_receipts(identity, tmp_path):
    path = tmp_path / "receipt.json"
    path.write_bytes(canonical_json(build_receipt(identity, execution(), NOW)))
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(path), "--public-key", identity.public_key])
    assert ok.exit_code == 0 and "execution_receipt signature verifies" in ok.output
    wrong = runner.invoke(main, ["verify", str(path), "--public-key", KeyPair.generate().public_key_b64])
    assert wrong.exit_code == 1 and "INVALID" in wrong.output
    tampered = tmp_path / "tampered.json"
    tampered.write_text(path.read_text().replace("Paris", "Rome"))
    bad = runner.invoke(main, ["verify", str(tampered)])
    assert bad.exit_code == 1 and "does not verify" in bad.output


def test_beacon_verify_public_key_applies_to_jobspecs_too(tmp_path):
    signer = KeyPair.generate()
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(sign_document({"id": "j", "version": "1"}, signer.signing_key)))
    runner = CliRunner()
    assert runner.invoke(main, ["verify", str(path), "--public-key", signer.public_key_b64]).exit_code == 0
    other = runner.invoke(main, ["verify", str(path), "--public-key", KeyPair.generate().public_key_b64])
    assert other.exit_code == 1 and "another key" in other.output


# ----------------------------------------------------------------- bundles


def test_bundle_holds_spec_receipts_analysis_identity_and_verifies(identity):
    receipts = [build_receipt(identity, execution(i), NOW) for i in (1, 2)]
    data = bundle_bytes(identity, job(), receipts, NOW)
    doc = loads(data)
    assert canonical_json(doc) == data, "bundle bytes are canonical JSON"
    assert doc["kind"] == "evidence_bundle" and doc["jobspec"] == '{"id": "job-1", "signature": "x"}'
    assert doc["receipts"] == receipts and doc["analysis"] == {"summary": {"overall_risk": "low"}}
    assert doc["runner"] == {"key_id": identity.key_id, "public_key": identity.public_key, "algorithm": "ed25519"}
    assert verify_runner_document(doc, "evidence_bundle", identity.public_key) == identity.key_id
    for receipt in doc["receipts"]:
        verify_runner_document(receipt, "execution_receipt", identity.public_key)


@pytest.mark.parametrize("output_size", [10, 300_000, 2_000_000])
def test_bundle_cid_equals_ipfs_cid(identity, output_size):
    """Small (one block) and large (a DAG of many 256 KiB leaves) bundles."""
    receipts = [build_receipt(identity, execution(1, output="é<&>\u2028" + "x" * output_size), NOW)]
    data = bundle_bytes(identity, job(), receipts, NOW)
    dag = build_dag(data)
    assert (dag.root, dag.root_v1) == ipfs_cid_of(data)


def test_ipfs_cid_command_prints_the_cid_last(tmp_path):
    path = tmp_path / "bundle.json"
    path.write_bytes(os.urandom(700_000))
    v0, v1 = ipfs_cid_of(path.read_bytes())
    runner = CliRunner()
    assert runner.invoke(main, ["ipfs", "cid", str(path)]).output.splitlines()[-1] == v0
    assert runner.invoke(main, ["ipfs", "cid", str(path), "--cid-version", "1"]).output.splitlines()[-1] == v1


# ----------------------------------------------------------------- block store


def test_directory_store_round_trip_and_integrity(tmp_path):
    data = os.urandom(5 * 262144 + 17)
    dag = build_dag(data)
    store = DirBlockStore(tmp_path / "blocks")
    store.put(None, dag.blocks)
    assert read_file(store, dag.root) == data
    assert read_file(store, dag.root_v1) == data
    files = sorted(p.name for p in (tmp_path / "blocks").rglob("*") if p.is_file())
    assert files == sorted(block.cid for block in dag.blocks), "files are named by their CID only"
    leaf = next(p for p in (tmp_path / "blocks").rglob(dag.blocks[0].cid))
    leaf.write_bytes(leaf.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BlockCorrupt, match="does not hash to its CID"):
        read_file(store, dag.root)
    leaf.unlink()
    with pytest.raises(BlockMissing):
        read_file(store, dag.root)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "..", "Qm/../x", "/etc/passwd", "QmXXX", "bafy%2F",
                                 "QmWub6f5eejQrgLCRAN2wWDs2CFSFQFg4USmedNMVy52S/"])
def test_directory_store_rejects_anything_but_a_canonical_cid(tmp_path, bad):
    store = DirBlockStore(tmp_path / "blocks")
    with pytest.raises(ValueError):
        store.get(bad)
    assert not (tmp_path / "blocks").exists()


def test_raw_codec_cids_are_not_in_a_dag_pb_store(tmp_path):
    with pytest.raises(BlockMissing, match="raw-codec"):
        read_file(DirBlockStore(tmp_path), "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku")


# ----------------------------------------------------------------- transparency frontier


def test_frontier_root_equals_merkle_root_for_every_size_to_300():
    leaves = [merkle.leaf_hash(f"entry {i}".encode()) for i in range(300)]
    frontier: list[bytes] = []
    assert frontier_root(frontier) == merkle.EMPTY_ROOT
    for size, leaf in enumerate(leaves):
        frontier = _push(frontier, size, leaf)
        assert len(frontier) == bin(size + 1).count("1")
        assert frontier_root(frontier) == merkle.root(leaves[: size + 1]), size + 1


# ----------------------------------------------------------------- the runner key


def _load_key(args) -> str:
    from beacon.settings import Settings

    data_dir, start = args
    start.wait()
    return runner_identity(Settings.from_env({"BEACON_DATA_DIR": data_dir})).public_key


def test_embedded_key_is_created_once_by_concurrent_processes(tmp_path):
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Event()
    with context.Pool(6) as pool:
        pending = pool.map_async(_load_key, [(str(tmp_path / "data"), start)] * 6)
        start.set()
        keys = pending.get(timeout=120)
    assert len(set(keys)) == 1, "every process must load the same key"
    path = tmp_path / "data" / EMBEDDED_KEY_FILE
    assert KeyPair.load(path).public_key_b64 == keys[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_configured_key_is_used_and_a_missing_one_is_a_clear_error(make_settings, tmp_path):
    pair = KeyPair.generate()
    pair.save(tmp_path / "runner.key")
    assert runner_identity(make_settings(RUNNER_SIGNING_KEY=tmp_path / "runner.key")).public_key == pair.public_key_b64
    with pytest.raises(RunnerKeyError, match="does not exist"):
        runner_identity(make_settings(RUNNER_SIGNING_KEY=tmp_path / "absent.key"))
    (tmp_path / "garbled.key").write_text("not base64!\n")
    with pytest.raises(RunnerKeyError, match="cannot load"):
        runner_identity(make_settings(RUNNER_SIGNING_KEY=tmp_path / "garbled.key"))


@pytest.mark.parametrize("env", [{"BEACON_ENV": "production"}, {"FLY_APP_NAME": "beacon-runner"}])
def test_production_never_makes_up_a_runner_key(make_settings, env, tmp_path):
    settings = make_settings(DATABASE_URL="postgresql://db/beacon", **env)  # beat and Flower need no key
    assert settings.production
    with pytest.raises(RunnerKeyError, match="RUNNER_SIGNING_KEY is required in production"):
        runner_identity(settings)
    assert not (tmp_path / "data" / "runner-signing-key").exists()
    settings = make_settings(DATABASE_URL="postgresql://db/beacon", RUNNER_SIGNING_KEY=tmp_path / "k", **env)
    assert settings.production


def test_a_key_file_others_may_read_is_a_warning(make_settings, tmp_path, caplog):
    import logging

    KeyPair.generate().save(tmp_path / "private.key")
    KeyPair.generate().save(tmp_path / "shared.key")
    (tmp_path / "shared.key").chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="beacon.evidence.identity"):
        runner_identity(make_settings(RUNNER_SIGNING_KEY=tmp_path / "private.key"))
        assert not caplog.records
        runner_identity(make_settings(RUNNER_SIGNING_KEY=tmp_path / "shared.key"))
    [warning] = caplog.records
    assert "readable by its group or by others" in warning.getMessage() and warning.mode == "0o640"


def test_bad_environment_name(make_settings):
    with pytest.raises(SettingsError, match="BEACON_ENV must be development or production"):
        make_settings(BEACON_ENV="staging")
