"""Pinning bundles over the Kubo HTTP RPC API, on real Postgres.

The node is ``tests.support.LoopbackIpfsNode``, a loopback stand-in for Kubo's RPC API: no Kubo
binary installs here (see its docstring). It computes CIDs with Debian's ``ipfs_cid``, not with
beacon.evidence.cid, so the CID check is against an independent implementation.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest

from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.evidence import bundles
from beacon.evidence.ipfs_rpc import IpfsError, IpfsRpc
from beacon.execution import engine
from beacon.models import Bundle
from beacon.timeutil import utcnow
from tests.factories import seed_answered_job
from tests.support import LoopbackIpfsNode, ipfs_cid_of

BASE, CAP = 10.0, 40.0


@pytest.fixture
def node():
    node = LoopbackIpfsNode()
    yield node
    node.stop()


@pytest.fixture
def ipfs_settings(make_settings, clean_db, node, tmp_path):
    KeyPair.generate().save(tmp_path / "runner.key")
    return make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=tmp_path / "runner.key", IPFS_API_URL=node.url,
                         PIN_RETRY_BASE_SECONDS=BASE, PIN_RETRY_MAX_SECONDS=CAP, IPFS_TIMEOUT_SECONDS=5,
                         LOG_LEVEL="WARNING")


def finalised_bundle(settings, keypair) -> Bundle:
    db = database_for(settings.database_url)
    job_id = seed_answered_job(db, settings, keypair, ["math_basic", "tiananmen_neutral"])
    assert engine.finalize_job(db, settings, job_id) == "completed"
    with db.session() as session:
        return bundles.job_bundle(session, job_id)


def reload(settings, cid: str) -> Bundle:
    with database_for(settings.database_url).session() as session:
        return session.get(Bundle, cid)


def test_client_add_matches_ipfs_cid_and_pins(node):
    node.start()
    client = IpfsRpc(node.url, 5)
    data = os.urandom(600_000)
    cid = client.add(data)
    assert cid == ipfs_cid_of(data)[0]
    assert node.add_params[-1]["pin"] == "false", "nothing is pinned before its CID is checked"
    client.pin(cid)
    assert node.pins == {cid}
    with pytest.raises(IpfsError, match="HTTP 500: block QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH not found"):
        client.pin("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_finalised_bundle_is_pinned(node, ipfs_settings, keypair):
    node.start()
    bundle = finalised_bundle(ipfs_settings, keypair)
    assert bundle.pin_state == "pinned" and bundle.pin_attempts == 1 and bundle.pin_error is None
    assert bundle.pinned_at is not None and bundle.pin_next_attempt_at is None
    assert node.pins == {bundle.cid}
    data = node.contents[bundle.cid]
    assert ipfs_cid_of(data) == (bundle.cid, bundle.cid_v1)
    assert bundles.retry_pins(database_for(ipfs_settings.database_url), ipfs_settings) == \
        {"pinned": 0, "pending": 0, "mismatch": 0}


def test_node_cid_mismatch_is_recorded_and_not_pinned(node, ipfs_settings, keypair):
    node.cid_version = 1  # a node importing with CIDv1 answers another CID for the same bytes
    node.start()
    bundle = finalised_bundle(ipfs_settings, keypair)
    assert bundle.pin_state == "mismatch"
    assert f"the IPFS node computed {bundle.cid_v1} for bundle {bundle.cid}; not pinned" == bundle.pin_error
    assert node.pins == set()
    adds = len(node.add_params)
    later = utcnow() + timedelta(days=1)
    assert bundles.retry_pins(database_for(ipfs_settings.database_url), ipfs_settings, now=later)["mismatch"] == 0
    assert len(node.add_params) == adds, "a mismatch is not retried"
    assert reload(ipfs_settings, bundle.cid).pin_state == "mismatch"


def test_node_down_is_retried_by_beat_with_backoff_then_pinned(node, ipfs_settings, keypair):
    db = database_for(ipfs_settings.database_url)
    before = utcnow()
    bundle = finalised_bundle(ipfs_settings, keypair)  # the node is not listening yet
    after = utcnow()
    assert bundle.pin_state == "pending" and bundle.pin_attempts == 1
    assert "unreachable" in bundle.pin_error
    first_retry = bundle.pin_next_attempt_at
    assert before + timedelta(seconds=BASE) <= first_retry <= after + timedelta(seconds=BASE)

    assert bundles.retry_pins(db, ipfs_settings, now=first_retry - timedelta(seconds=1))["pending"] == 0
    assert reload(ipfs_settings, bundle.cid).pin_attempts == 1, "not due yet: not attempted"

    assert bundles.retry_pins(db, ipfs_settings, now=first_retry) == {"pinned": 0, "pending": 1, "mismatch": 0}
    second = reload(ipfs_settings, bundle.cid)
    assert second.pin_attempts == 2 and second.pin_next_attempt_at == first_retry + timedelta(seconds=2 * BASE)

    bundles.retry_pins(db, ipfs_settings, now=second.pin_next_attempt_at)
    third = reload(ipfs_settings, bundle.cid)
    assert third.pin_attempts == 3 and third.pin_next_attempt_at == second.pin_next_attempt_at + timedelta(seconds=CAP)

    node.start()
    assert bundles.retry_pins(db, ipfs_settings, now=third.pin_next_attempt_at) == \
        {"pinned": 1, "pending": 0, "mismatch": 0}
    pinned = reload(ipfs_settings, bundle.cid)
    assert pinned.pin_state == "pinned" and pinned.pin_attempts == 4 and pinned.pin_error is None
    assert node.pins == {bundle.cid}


def test_without_ipfs_url_bundles_wait_unpinned(make_settings, clean_db, keypair, tmp_path):
    KeyPair.generate().save(tmp_path / "runner.key")
    settings = make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=tmp_path / "runner.key", LOG_LEVEL="WARNING")
    bundle = finalised_bundle(settings, keypair)
    assert bundle.pin_state == "pending" and bundle.pin_attempts == 0
    assert bundles.retry_pins(database_for(clean_db), settings, now=utcnow() + timedelta(days=1))["pending"] == 0
