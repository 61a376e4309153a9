"""The Project Beacon portal as a client, unchanged: bodies signed by the portal's own algorithm in
Node.js (``tests/js``: @noble/ed25519 and ethers, as the portal uses them), posted to the routes the
portal calls, against a real API, a real worker, Postgres and Redis.

What runs is what was signed: forgeries of uncovered or added fields are refused or ignored.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from nacl.signing import SigningKey

from beacon.crypto.signing import KeyPair, b64decode, b64encode, verify_document
from beacon.timeutil import isoformat, utcnow
from tests.factories import make_spec
from tests.jsclient import shared
from tests.stack import Stack
from tests.support import fixtures_dir

JSON = {"Content-Type": "application/json"}
SEED = bytes.fromhex("5e" * 32)
WALLET_KEY = "0x" + "4c" * 32  # a test wallet's private key (ethers derives its address)
PORTAL_ORIGIN_REGIONS = ["US", "EU"]


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    """The stack trusts the key the portal's code signs with in these tests."""
    return KeyPair(SigningKey(SEED))


def portal_spec(key: KeyPair, **metadata) -> dict:
    """A JobSpec shaped as the portal builds it (from its October 2025 payload), fresh nonce and time,
    with a wallet_auth for this key signed by ethers."""
    doc = json.loads((fixtures_dir() / "portal" / "portal-signed-2025-10.json").read_text())
    for field in ("signature", "public_key"):
        doc.pop(field)
    now = utcnow()
    doc["id"] = f"bias-detection-{int(now.timestamp() * 1000)}-{uuid.uuid4().hex[:6]}"
    doc["created_at"] = isoformat(now)
    doc["metadata"].update(nonce=uuid.uuid4().hex[:22], timestamp=isoformat(now.replace(microsecond=0)), **metadata)
    message = f"Authorize Project Beacon key: {key.public_key_b64}"
    address, signature = shared().wallet(WALLET_KEY, message)
    doc["metadata"]["wallet_address"] = address.lower()
    doc["wallet_auth"] = {"address": address, "signature": signature, "message": message, "chainId": 1,
                          "nonce": uuid.uuid4().hex[:22], "expiresAt": isoformat(now + timedelta(days=7))}
    return doc


def portal_sign(doc: dict, form: str = "portal-2025-10") -> dict:
    signed, _ = shared().sign(doc, form, SEED)
    return signed


def wrapper(jobspec: dict, **outer) -> dict:
    return {"jobspec": jobspec, "target_regions": PORTAL_ORIGIN_REGIONS, "min_regions": 1,
            "min_success_rate": 0.67, "enable_analysis": True, **outer}


def post_cross_region(stack: Stack, body: dict) -> requests.Response:
    return requests.post(f"{stack.api}/api/v1/jobs/cross-region", data=json.dumps(body), headers=JSON, timeout=30)


def post_job(stack: Stack, doc: dict) -> requests.Response:
    return requests.post(f"{stack.api}/api/v1/jobs", data=json.dumps(doc), headers=JSON, timeout=30)


def test_portal_submission_runs_and_its_bundle_names_the_form(fresh, keys):
    signed = portal_sign(portal_spec(keys))
    response = post_cross_region(fresh, wrapper(signed))
    assert response.status_code == 202, response.text
    accepted = response.json()
    job_id = signed["id"]  # uncovered, but free: it names the job
    assert {accepted[k] for k in ("id", "job_id", "jobspec_id", "cross_region_execution_id")} == {job_id}
    assert accepted["status"] == "submitted" and accepted["total_regions"] == 2 and accepted["min_regions"] == 1

    view = fresh.wait_terminal(job_id, timeout=120)
    assert view["status"] == "completed", view["status_reason"]
    assert len(view["executions"]) == 2 * 3 * 3  # regions × the portal's three models × three questions
    assert view["signature_form"] == "portal"
    assert view["submitter_wallet"] == signed["wallet_auth"]["address"].lower()
    assert view["requested"] == {"target_regions": PORTAL_ORIGIN_REGIONS, "min_regions": 1,
                                 "min_success_rate": 0.67, "enable_analysis": True}
    assert verify_document(view["spec"]) == "portal"  # stored = signed: the served spec verifies
    assert view["job"]["id"] == job_id and "created_at" in view["job"]

    bundle = requests.get(f"{fresh.api}/api/v1/jobs/{job_id}/bundle", timeout=10).json()
    sealed = requests.get(f"{fresh.api}/api/v1/transparency/bundles/{bundle['cid']}", timeout=10).json()
    assert sealed["signature_form"] == "portal"
    assert verify_document(json.loads(sealed["signed_jobspec"])) == "portal"


def test_zeros_added_to_a_portal_body_are_a_forgery(fresh, keys):
    genuine = portal_sign(portal_spec(keys))
    forged = copy.deepcopy(genuine)
    forged["constraints"].update(min_success_rate=0, min_regions=0)
    response = post_job(fresh, forged)
    assert response.status_code == 400 and response.json()["error_code"] == "signature_mismatch", response.text
    assert post_job(fresh, genuine).status_code == 202


def test_a_front_runner_who_changes_the_uncovered_id_gets_the_genuine_job(fresh, keys):
    genuine = portal_sign(portal_spec(keys))
    copy_with_other_id = {**genuine, "id": "chosen-by-someone-else"}
    first = post_job(fresh, copy_with_other_id)
    assert first.status_code == 202 and first.json()["id"] == "chosen-by-someone-else"
    second = post_job(fresh, genuine)
    assert second.status_code == 200, second.text
    assert second.json() == {"id": "chosen-by-someone-else", "idempotent": True}
    third = post_cross_region(fresh, wrapper(genuine))  # the same through the portal's route
    assert third.status_code == 200 and third.json()["id"] == "chosen-by-someone-else"


def test_an_uncovered_id_held_by_another_job_gets_a_generated_id(fresh, keys):
    first = portal_sign(portal_spec(keys))
    assert post_job(fresh, first).status_code == 202
    second = portal_sign({**portal_spec(keys), "id": first["id"]})
    response = post_job(fresh, second)
    assert response.status_code == 202, response.text
    generated = response.json()["id"]
    assert generated != first["id"]
    slug, millis, digest = generated.rsplit("-", 2)
    assert slug == "multi-model-bias-detection" and millis.isdigit() and len(digest) == 8


def test_wrapper_regions_must_be_the_signed_regions(fresh, keys):
    signed = portal_sign(portal_spec(keys))
    response = post_cross_region(fresh, wrapper(signed, target_regions=["US", "EU", "APAC"]))
    assert response.status_code == 400 and response.json()["error_code"] == "validation_error"
    # the unsigned outer values never change the verdict: min_success_rate 0 is only recorded
    accepted = post_cross_region(fresh, wrapper(signed, target_regions=["eu", "us"], min_success_rate=0))
    assert accepted.status_code == 202, accepted.text


def test_a_go_signed_zero_success_rate_runs_with_the_default(fresh, keys):
    spec = make_spec(keys, constraints={"regions": ["US", "EU", "APAC"], "min_regions": 0,
                                              "min_success_rate": 0})
    assert post_job(fresh, spec).status_code == 202
    view = fresh.wait_terminal(spec["id"], timeout=60)
    assert "needed 0.67" in view["status_reason"] and "(needed 3)" in view["status_reason"]


@pytest.mark.parametrize("form", ["go", "portal-2025-10", "portal-2025-09"])
def test_stored_spec_verifies_with_negative_zero_big_numbers_and_astral_text(fresh, keys, form):
    extra = {"neg_zero": -0.0, "big": 1e21, "tiny": 1e-7, "astral": "\U0001d11e naïve 𝔘", "html": "<&>"}
    if form == "go":
        doc = make_spec(keys, metadata={"nonce": uuid.uuid4().hex,
                                              "timestamp": isoformat(utcnow().replace(microsecond=0)), **extra})
        expected = "current"
    else:
        doc = portal_sign(portal_spec(keys, **extra), form)
        expected = "portal" if form == "portal-2025-10" else "portal_full"
    response = post_job(fresh, doc)
    assert response.status_code == 202, response.text
    served = requests.get(f"{fresh.api}/api/v1/jobs/{response.json()['id']}", timeout=10).json()
    assert verify_document(served["spec"]) == expected
    assert served["signature_form"] == expected


def test_wallet_auth_is_checked(fresh, keys):
    expired = portal_spec(keys)
    expired["wallet_auth"]["expiresAt"] = isoformat(utcnow() - timedelta(minutes=1))
    response = post_job(fresh, portal_sign(expired))
    assert response.status_code == 400 and response.json()["error_code"] == "wallet_auth_invalid:expired"

    claimed = portal_spec(keys)
    claimed["metadata"]["wallet_address"] = "0x" + "12" * 20
    response = post_job(fresh, portal_sign(claimed))
    assert response.json()["error_code"] == "wallet_auth_invalid:address_mismatch", response.text


def test_an_allowlisted_wallet_admits_a_fresh_browser_key(tmp_path, pg_settings, make_settings, clean_db, redis_urls):
    from app import create_app
    from tests.support import serve_wsgi

    browser_key = KeyPair(SigningKey(bytes.fromhex("77" * 32)))  # not in the trusted keys file
    address, _ = shared().wallet(WALLET_KEY, "probe")
    allowlist = tmp_path / "wallets.json"
    allowlist.write_text(json.dumps([address.lower()]))
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"],
                             TRUSTED_KEYS_FILE=pg_settings.trusted_keys_file, WALLET_ALLOWLIST_FILE=str(allowlist))

    def sign_as_browser(doc: dict) -> dict:
        signed, _ = shared().sign(doc, "portal-2025-10", bytes.fromhex("77" * 32))
        return signed

    with serve_wsgi(create_app(settings)) as api:
        ok = requests.post(f"{api}/api/v1/jobs", data=json.dumps(sign_as_browser(portal_spec(browser_key))),
                           headers=JSON, timeout=30)
        assert ok.status_code == 202, ok.text
        bare = portal_spec(browser_key)
        bare.pop("wallet_auth")
        refused = requests.post(f"{api}/api/v1/jobs", data=json.dumps(sign_as_browser(bare)), headers=JSON, timeout=30)
        assert refused.json()["error_code"] == "trust_violation:unknown"
    allowlist.write_text(json.dumps(["0x" + "ab" * 20]))
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"],
                             TRUSTED_KEYS_FILE=pg_settings.trusted_keys_file, WALLET_ALLOWLIST_FILE=str(allowlist))
    with serve_wsgi(create_app(settings)) as api:
        other = requests.post(f"{api}/api/v1/jobs", data=json.dumps(sign_as_browser(portal_spec(browser_key))),
                              headers=JSON, timeout=30)
        assert other.status_code == 403 and other.json()["error_code"] == "wallet_not_allowed"


def test_four_spellings_of_one_key_are_one_submitter(make_settings, clean_db, redis_urls):
    """With TRUST_ENFORCE=false the allowlist is skipped, but a signed body still runs once: nonces,
    identities and rate limits compare keys by their decoded bytes, not their base64 text."""
    from app import create_app
    from tests.support import serve_wsgi

    key = KeyPair.generate()
    spec = make_spec(key)
    raw = b64decode(spec["public_key"], 32, "public_key")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    canonical = b64encode(raw)
    base = alphabet.index(canonical[-2]) & ~3  # the last character's two low bits are padding
    spellings = {canonical[:-2] + alphabet[base + low] + "=" for low in range(4)}
    assert all(b64decode(s, 32, "public_key") == raw for s in spellings)
    assert len(spellings) == 4
    settings = make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"], TRUST_ENFORCE="false")
    with serve_wsgi(create_app(settings)) as api:
        statuses = []
        for spelling in sorted(spellings):
            doc = {**spec, "public_key": spelling}
            answer = requests.post(f"{api}/api/v1/jobs", data=json.dumps(doc), headers=JSON, timeout=30)
            statuses.append((answer.status_code, answer.json().get("id")))
    assert sorted(s for s, _ in statuses) == [200, 200, 200, 202]
    assert {job_id for _, job_id in statuses} == {spec["id"]}


def test_portal_fixtures_verify_with_beacon_verify():
    import subprocess
    import sys

    for name, form in (("portal-signed-2025-10.json", "portal"), ("portal-signed-2025-09.json", "portal_with_created_at"),
                       ("cross-region-request.json", "portal")):
        out = subprocess.run([sys.executable, "-m", "beacon", "verify", str(fixtures_dir() / "portal" / name)],
                             capture_output=True, text=True, env={**os.environ, "BEACON_DATA_DIR": str(Path("/tmp"))})
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"({form} form)" in out.stdout
        assert "wallet_auth recovers 0x67f3d16a91991cf169920f1e79f78e66708da328" in out.stdout

