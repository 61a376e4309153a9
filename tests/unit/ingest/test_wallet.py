"""wallet_auth: the portal's real wallet signatures and fresh ethers ones verify; bad ones get the right reason."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from beacon.ingest.wallet import WalletAuthInvalid, auth_message, recover_address, verify_wallet_auth
from tests import jsclient

PORTAL_FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "portal"
FIXTURE_NAMES = ["portal-signed-2025-09.json", "portal-signed-2025-10.json", "cross-region-request.json"]

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
P = 2**256 - 2**32 - 977
PUBLIC_KEY = "qBP01SQs+cJ57B1sBjypEotITySqNR9EF3qK412l6Tk="
PRIVATE_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
OTHER_PRIVATE_KEY = "0x" + "11" * 32
NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)


def fixture_spec(name: str) -> dict[str, Any]:
    doc = json.loads((PORTAL_FIXTURES / name).read_text(encoding="utf-8"))
    return doc.get("jobspec", doc)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_portal_fixture_wallet_signature_recovers_its_address(name):
    spec = fixture_spec(name)
    auth = spec["wallet_auth"]
    assert verify_wallet_auth(auth, spec["public_key"], NOW, check_expiry=False) == auth["address"].lower()
    assert recover_address(auth["message"], auth["signature"]) == "0x67f3d16a91991cf169920f1e79f78e66708da328"
    with pytest.raises(WalletAuthInvalid) as caught:
        verify_wallet_auth(auth, spec["public_key"], NOW)
    assert caught.value.reason == "expired"


def test_fixture_expiry_is_exclusive_to_the_millisecond():
    spec = fixture_spec("portal-signed-2025-10.json")
    expires = datetime(2025, 10, 19, 14, 11, 59, 79000, tzinfo=timezone.utc)
    ok = verify_wallet_auth(spec["wallet_auth"], spec["public_key"], expires - timedelta(milliseconds=1))
    assert ok == "0x67f3d16a91991cf169920f1e79f78e66708da328"
    with pytest.raises(WalletAuthInvalid) as caught:
        verify_wallet_auth(spec["wallet_auth"], spec["public_key"], expires)
    assert caught.value.reason == "expired"


def fresh_auth(private_key: str = PRIVATE_KEY, public_key: str = PUBLIC_KEY, **overrides: Any) -> dict[str, Any]:
    """A wallet_auth as the portal builds it, signed by ethers' Wallet.signMessage."""
    message = auth_message(public_key)
    address, signature = jsclient.shared().wallet(private_key, message)
    auth = {
        "address": address,
        "signature": signature,
        "message": message,
        "chainId": 1,
        "nonce": "8AfOoEtH5bw40UB4pacMJQ",
        "expiresAt": "2030-01-08T00:00:00.000Z",
    }
    auth.update(overrides)
    return auth


def reason(auth: Any, public_key: Any = PUBLIC_KEY, now: datetime = NOW, **kwargs: Any) -> str:
    with pytest.raises(WalletAuthInvalid) as caught:
        verify_wallet_auth(auth, public_key, now, **kwargs)
    return caught.value.reason


@settings(max_examples=25, deadline=None)
@given(key=st.integers(min_value=1, max_value=N - 1), public_key=st.text(min_size=1, max_size=60))
def test_fresh_ethers_auths_verify(key, public_key):
    private_key = "0x" + key.to_bytes(32, "big").hex()
    auth = fresh_auth(private_key, public_key)
    assert verify_wallet_auth(auth, public_key, NOW) == auth["address"].lower()


@settings(max_examples=25, deadline=None)
@given(message=st.text(st.characters(exclude_categories=("Cs",)), max_size=200))
def test_recover_address_matches_ethers_for_any_message(message):
    address, signature = jsclient.shared().wallet(OTHER_PRIVATE_KEY, message)
    assert recover_address(message, signature) == address.lower()


def _with_v(signature: str, v: int) -> str:
    return signature[:-2] + f"{v:02x}"


def test_v_may_be_0_1_or_27_28():
    auth = fresh_auth()
    v = int(auth["signature"][-2:], 16)
    assert v in (27, 28)
    for accepted in (v, v - 27):
        assert verify_wallet_auth({**auth, "signature": _with_v(auth["signature"], accepted)}, PUBLIC_KEY, NOW)
    assert verify_wallet_auth({**auth, "signature": auth["signature"][2:].upper()}, PUBLIC_KEY, NOW)


@pytest.mark.parametrize("v", [2, 3, 26, 29, 30, 37, 38, 255])
def test_other_v_values_are_bad_signatures(v):
    auth = fresh_auth()
    assert reason({**auth, "signature": _with_v(auth["signature"], v)}) == "bad_signature"


def test_the_other_recovery_id_recovers_someone_else():
    auth = fresh_auth()
    v = int(auth["signature"][-2:], 16)
    assert reason({**auth, "signature": _with_v(auth["signature"], 55 - v)}) == "address_mismatch"


def test_high_s_twin_is_refused():
    auth = fresh_auth()
    raw = bytes.fromhex(auth["signature"][2:])
    s = int.from_bytes(raw[32:64], "big")
    twin = raw[:32] + (N - s).to_bytes(32, "big") + bytes([55 - raw[64]])
    assert reason({**auth, "signature": "0x" + twin.hex()}) == "bad_signature"


def _x_without_a_point() -> int:
    x = 1
    while pow(x**3 + 7, (P - 1) // 2, P) != P - 1:
        x += 1
    return x


@pytest.mark.parametrize(
    "r, s",
    [(0, 1), (1, 0), (N, 1), (2**256 - 1, 1), (1, N // 2 + 1), ("no-point", 1)],
    ids=["r0", "s0", "r=n", "r-max", "s-high", "r-not-an-x"],
)
def test_out_of_range_or_unrecoverable_signatures(r, s):
    r = _x_without_a_point() if r == "no-point" else r
    signature = "0x" + r.to_bytes(32, "big").hex() + s.to_bytes(32, "big").hex() + "1b"
    assert reason(fresh_auth(signature=signature)) == "bad_signature"


def test_signature_by_another_wallet_is_an_address_mismatch():
    mine = fresh_auth()
    theirs = fresh_auth(OTHER_PRIVATE_KEY)
    assert reason({**mine, "signature": theirs["signature"]}) == "address_mismatch"
    assert reason({**theirs, "address": mine["address"]}) == "address_mismatch"


def test_address_compare_ignores_case():
    auth = fresh_auth()
    for address in (auth["address"].lower(), "0x" + auth["address"][2:].upper()):
        assert verify_wallet_auth({**auth, "address": address}, PUBLIC_KEY, NOW) == auth["address"].lower()


@pytest.mark.parametrize(
    "message",
    [
        "Authorize Project Beacon key: " + "A" * 44,
        "Authorize Project Beacon key: " + PUBLIC_KEY + " ",
        "authorize Project Beacon key: " + PUBLIC_KEY,
        "Authorize Project Beacon key:" + PUBLIC_KEY,
        PUBLIC_KEY,
        "",
    ],
)
def test_message_must_name_exactly_the_spec_key(message):
    assert reason(fresh_auth(message=message)) == "message_mismatch"


def test_auth_for_another_ed25519_key_is_a_message_mismatch():
    assert reason(fresh_auth(public_key="B" * 43 + "=")) == "message_mismatch"


def test_expired_and_check_expiry_false():
    auth = fresh_auth(expiresAt="2029-12-31T23:59:59.999Z")
    assert reason(auth) == "expired"
    assert verify_wallet_auth(auth, PUBLIC_KEY, NOW, check_expiry=False) == auth["address"].lower()


def test_expiry_with_an_offset():
    auth = fresh_auth(expiresAt="2030-01-01T02:00:00.5+02:00")  # 00:00:00.5 UTC
    assert verify_wallet_auth(auth, PUBLIC_KEY, NOW)
    assert reason(auth, now=NOW + timedelta(milliseconds=500)) == "expired"


@pytest.mark.parametrize(
    "expires_at",
    [
        "2030-01-08",
        "2030-01-08T00:00:00",
        "2030-13-01T00:00:00Z",
        "2030-01-08T24:00:00Z",
        "2030-01-08T00:00:60Z",
        "2030-01-08 00:00:00Z",
        "2030-01-08T00:00:00.Z",
        "2030-01-08T00:00:00+24:00",
        "\u0662030-01-08T00:00:00Z",
        "2030-01-08T00:00:00Z\n",
        "1893456000000",
        "",
    ],
)
def test_malformed_expiry(expires_at):
    assert reason(fresh_auth(expiresAt=expires_at), check_expiry=False) == "malformed"


@pytest.mark.parametrize("auth", [None, [], "wallet", 5, 1.5, True, ["address"]])
def test_non_objects_are_malformed(auth):
    assert reason(auth) == "malformed"


@pytest.mark.parametrize("field", ["address", "signature", "message", "chainId", "nonce", "expiresAt"])
def test_each_field_is_required(field):
    auth = fresh_auth()
    del auth[field]
    assert reason(auth) == "malformed"


@pytest.mark.parametrize(
    "field, value",
    [
        ("address", 123),
        ("address", None),
        ("address", "0x123"),
        ("address", "67f3d16a91991cf169920f1e79f78e66708da328"),
        ("address", "0x67f3d16a91991cf169920f1e79f78e66708da32g"),
        ("signature", None),
        ("signature", 5),
        ("signature", ["0x00"]),
        ("message", None),
        ("message", {"text": "x"}),
        ("chainId", "1"),
        ("chainId", True),
        ("chainId", 1.0),
        ("chainId", -1),
        ("chainId", None),
        ("nonce", 7),
        ("nonce", None),
        ("expiresAt", 1893456000000),
        ("expiresAt", None),
    ],
)
def test_wrong_types_are_malformed(field, value):
    assert reason(fresh_auth(**{field: value})) == "malformed"


@pytest.mark.parametrize(
    "mangle",
    [
        lambda sig: sig[:-2],  # 64 bytes
        lambda sig: sig + "00",  # 66 bytes
        lambda sig: sig[:-1],  # odd length
        lambda sig: sig[:10] + "zz" + sig[12:],
        lambda sig: " " + sig,
        lambda sig: sig + "\n",
        lambda sig: sig[:4] + " " + sig[4:-1],
        lambda sig: "0x",
        lambda sig: "",
        lambda sig: "0x" + "\u0661" * 130,
    ],
)
def test_bad_hex_is_malformed(mangle):
    auth = fresh_auth()
    assert reason({**auth, "signature": mangle(auth["signature"])}) == "malformed"


@pytest.mark.parametrize("public_key", [None, 5, b"qBP0", ""])
def test_bad_public_key_argument_is_malformed(public_key):
    assert reason(fresh_auth(), public_key=public_key) == "malformed"


def test_extra_fields_are_ignored():
    auth = fresh_auth(ed25519Key=PUBLIC_KEY, timestamp=1760278319079)
    assert verify_wallet_auth(auth, PUBLIC_KEY, NOW) == auth["address"].lower()


def test_recover_address_rejects_junk():
    for message, signature in [
        (None, "0x" + "00" * 65),
        ("m", None),
        ("m", "0x00"),
        ("\ud800", fresh_auth()["signature"]),
    ]:
        with pytest.raises(WalletAuthInvalid) as caught:
            recover_address(message, signature)
        assert caught.value.reason == "malformed"


def test_naive_now_is_a_programming_error():
    with pytest.raises(TypeError):
        verify_wallet_auth(fresh_auth(), PUBLIC_KEY, datetime(2030, 1, 1))


hostile = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.binary()),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
fields = st.sampled_from(["address", "signature", "message", "chainId", "nonce", "expiresAt", "extra"])


@settings(max_examples=300, deadline=None)
@given(replacements=st.dictionaries(fields, hostile, max_size=4), drop=st.lists(fields, max_size=2), whole=hostile)
def test_hostile_input_only_ever_raises_wallet_auth_invalid(replacements, drop, whole):
    base = dict(fixture_spec("portal-signed-2025-10.json")["wallet_auth"])
    base.update(replacements)
    for field in drop:
        base.pop(field, None)
    for auth in (base, whole):
        try:
            verify_wallet_auth(auth, PUBLIC_KEY, NOW)
        except WalletAuthInvalid as exc:
            assert exc.reason in {"malformed", "message_mismatch", "bad_signature", "address_mismatch", "expired"}
