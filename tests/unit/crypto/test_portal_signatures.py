"""Portal signatures verify in Python over js_sorted_stringify(projection), and only over the right one.

Forms (what the signed bytes leave out; see tests/js/portal-sign.mjs for the portal's history):
``full`` signature/public_key only, ``full-before-wallet_auth`` also wallet_auth (attached after
signing), ``no-id`` also id, ``no-id-no-created_at`` also created_at (the current portal).
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from beacon.crypto.jsjson import js_sorted_stringify
from tests import jsclient
from tests.jsclient import FORM_OMITS, projection
from tests.unit.crypto.test_jsjson import json_values, objects, texts

PORTAL_FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "portal"
FORMS = sorted(FORM_OMITS)


def load(name: str) -> dict[str, Any]:
    return json.loads((PORTAL_FIXTURES / name).read_text(encoding="utf-8"))


def fixture_spec(name: str) -> dict[str, Any]:
    doc = load(name)
    return doc["jobspec"] if name == "cross-region-request.json" else doc


def verifies(spec: dict[str, Any], form: str) -> bool:
    key = VerifyKey(base64.b64decode(spec["public_key"]))
    try:
        key.verify(js_sorted_stringify(projection(spec, form)), base64.b64decode(spec["signature"]))
    except BadSignatureError:
        return False
    return True


# Which forms each real payload verifies under. The September payload has no `id`, so leaving `id`
# out changes nothing there: `full` and `no-id` give the same bytes. It signed created_at and wallet_auth.
EXPECTED = {
    "portal-signed-2025-09.json": {"full", "no-id"},
    "portal-signed-2025-10.json": {"no-id-no-created_at"},
    "cross-region-request.json": {"no-id-no-created_at"},
}


def test_all_portal_fixtures_present():
    assert sorted(p.name for p in PORTAL_FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_verifies_under_exactly_its_projection(name):
    spec = fixture_spec(name)
    assert {form for form in FORMS if verifies(spec, form)} == EXPECTED[name]


def test_cross_region_wrapper_carries_the_october_spec_unchanged():
    request = load("cross-region-request.json")
    assert request["jobspec"] == load("portal-signed-2025-10.json")
    assert set(request) == {"jobspec", "target_regions", "min_regions", "min_success_rate", "enable_analysis"}
    # The wrapper's own fields are outside the signature: the signed object is the inner jobspec.
    assert request["target_regions"] == request["jobspec"]["constraints"]["regions"]


def _leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every scalar the signed bytes carry (a "__proto__" subtree is not carried)."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() if key != "__proto__" for leaf in _leaves(item, path + (key,))]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, path + (index,))]
    return [path]


def _changed(value: Any) -> Any:
    """A different scalar: one whose JSON.stringify text differs from ``value``'s."""
    if isinstance(value, str):
        return value + "!"
    if isinstance(value, bool):
        return not value
    if value is None:
        return 0
    if value != value or value in (float("inf"), float("-inf")) or value == 0:
        return 1  # NaN and infinities print null, -0 prints 0
    return -value


def _with_leaf_changed(spec: dict[str, Any], path: tuple) -> dict[str, Any]:
    changed = copy.deepcopy(spec)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = _changed(target[path[-1]])
    return changed


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_changing_any_covered_leaf_of_a_fixture_breaks_it(name):
    spec = fixture_spec(name)
    form = min(EXPECTED[name])
    covered = projection(spec, form)
    leaves = _leaves(covered)
    assert len(leaves) > 20
    for path in leaves:
        assert not verifies(_with_leaf_changed(spec, path), form), path


def test_october_payload_does_not_cover_id_or_created_at():
    """What the runner may not trust from a current-portal payload without other checks."""
    spec = fixture_spec("portal-signed-2025-10.json")
    spec["id"] = "someone-elses-job"
    spec["created_at"] = "1999-01-01T00:00:00.000Z"
    assert verifies(spec, "no-id-no-created_at")


def test_proto_keys_are_not_covered_by_portal_signatures():
    """JavaScript's sortKeys swallows "__proto__": such a key can be added to a signed spec unnoticed."""
    spec = fixture_spec("portal-signed-2025-10.json")
    spec["metadata"]["__proto__"] = {"model": "anything"}
    assert verifies(spec, "no-id-no-created_at")


seeds = st.binary(min_size=32, max_size=32)
wallet_auths = st.fixed_dictionaries(
    {
        "address": st.just("0x67f3d16a91991cf169920f1e79f78e66708da328"),
        "signature": st.just("0x" + "ab" * 65),
        "message": texts,
        "chainId": st.integers(min_value=0, max_value=2**40),
        "nonce": texts,
        "expiresAt": st.just("2025-10-19T14:11:59.079Z"),
    }
)
specs = st.fixed_dictionaries(
    {
        "version": st.just("v1"),
        "benchmark": st.fixed_dictionaries(
            {
                "name": texts,
                "version": texts,
                "container": st.fixed_dictionaries({"image": texts, "resources": objects(json_values)}),
                "input": objects(json_values),
            }
        ),
        "constraints": st.fixed_dictionaries(
            {
                "regions": st.lists(st.sampled_from(["US", "EU", "ASIA"]), max_size=3),
                "min_regions": st.integers(min_value=0, max_value=3),
                "timeout": st.integers(min_value=0, max_value=10**15),
            }
        ),
        "metadata": objects(json_values),
        "runs": st.integers(min_value=1, max_value=5),
        "questions": st.lists(texts, max_size=4),
    },
    optional={"id": texts, "created_at": texts, "wallet_auth": wallet_auths, "extra": json_values},
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=specs, seed=seeds, form=st.sampled_from(FORMS + sorted(jsclient.FORM_ALIASES)), data=st.data())
def test_node_signed_specs_verify_over_the_same_projection(spec, seed, form, data):
    signed, signed_bytes = jsclient.shared().sign(spec, form, seed)
    # The Python projection is exactly what node signed, and the signature checks out over it.
    assert js_sorted_stringify(projection(signed, form)) == signed_bytes
    assert verifies(signed, form)
    # Only the projection named after the form; a different one gives different bytes.
    for other in FORMS:
        if js_sorted_stringify(projection(signed, other)) != signed_bytes:
            assert not verifies(signed, other), other
    # Every covered leaf matters.
    path = data.draw(st.sampled_from(_leaves(projection(signed, form))), label="leaf")
    assert not verifies(_with_leaf_changed(signed, path), form)


def test_each_form_is_distinguishable_on_a_full_spec():
    """On a spec with id, created_at and wallet_auth, the four forms sign four different byte strings."""
    spec = {k: v for k, v in fixture_spec("portal-signed-2025-10.json").items() if k not in ("signature", "public_key")}
    js = jsclient.shared()
    produced = {}
    for form in FORMS:
        signed, signed_bytes = js.sign(spec, form, bytes(range(32)))
        assert verifies(signed, form)
        assert {other for other in FORMS if verifies(signed, other)} == {form}
        produced[form] = signed_bytes
    assert len(set(produced.values())) == len(FORMS)
    for alias, form in jsclient.FORM_ALIASES.items():
        assert js.sign(spec, alias, bytes(range(32)))[1] == produced[form]
