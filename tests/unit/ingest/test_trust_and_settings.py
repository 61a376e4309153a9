"""Trusted keys file validation and reload; settings parsing."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from beacon.crypto.signing import KeyPair
from beacon.errors import Invalid
from beacon.ingest.trust import TrustFileError, TrustStore, parse_trusted_keys
from beacon.settings import Settings, SettingsError

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def entry(**fields):
    return {"kid": "k1", "public_key": KeyPair.generate().public_key_b64, "status": "active", **fields}


@pytest.mark.parametrize(
    "entries, message",
    [
        ({"not": "a list"}, "must be a JSON array"),
        ([entry(kid="")], "kid must be a non-empty string"),
        ([entry(public_key="***")], "not valid standard base64"),
        ([entry(public_key="AAAA")], "must decode to 32 bytes"),
        ([entry(status="maybe")], "status must be active or revoked"),
        ([entry(), entry()], "duplicate kid"),
        ([entry(not_before="2026-02-01T00:00:00Z", not_after="2026-01-01T00:00:00Z")], "not_before must be earlier"),
        ([entry(not_after="tomorrow")], "not_after must be an RFC 3339 time"),
        ([entry(extra=1)], "unknown field extra"),
    ],
)
def test_invalid_trust_files(entries, message):
    with pytest.raises(TrustFileError, match=message):
        parse_trusted_keys(json.dumps(entries), "keys.json")


def test_duplicate_public_key():
    key = KeyPair.generate().public_key_b64
    with pytest.raises(TrustFileError, match="duplicate public_key"):
        parse_trusted_keys(json.dumps([entry(public_key=key), entry(kid="k2", public_key=key)]), "keys.json")


def test_store_reloads_when_file_changes_and_keeps_last_good(tmp_path):
    a, b = KeyPair.generate(), KeyPair.generate()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([entry(public_key=a.public_key_b64)]))
    store = TrustStore(str(path))
    store.check(a.public_key_b64, NOW)
    with pytest.raises(Invalid, match="not in the trusted keys"):
        store.check(b.public_key_b64, NOW)
    path.write_text(json.dumps([entry(public_key=b.public_key_b64, kid="b"), entry(public_key=a.public_key_b64, kid="a", status="revoked")]))
    store.check(b.public_key_b64, NOW)
    with pytest.raises(Invalid) as caught:
        store.check(a.public_key_b64, NOW)
    assert caught.value.code == "trust_violation:revoked"
    path.write_text("[ broken")
    store.check(b.public_key_b64, NOW)  # the previous good set stays


def test_window(tmp_path):
    key = KeyPair.generate()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([entry(public_key=key.public_key_b64, not_before="2026-01-01T00:00:00Z",
                                      not_after="2026-02-01T00:00:00Z")]))
    store = TrustStore(str(path))
    store.check(key.public_key_b64, NOW)
    for when, code in ((NOW - timedelta(seconds=1), "not_yet_valid"), (NOW + timedelta(days=31), "expired")):
        with pytest.raises(Invalid) as caught:
            store.check(key.public_key_b64, when)
        assert caught.value.code == f"trust_violation:{code}"


def test_bad_file_is_a_startup_error(tmp_path):
    with pytest.raises(TrustFileError, match="cannot read"):
        TrustStore(str(tmp_path / "missing.json"))


def test_not_enforced_allows_unknown_keys():
    TrustStore(None, enforce=False).check(KeyPair.generate().public_key_b64, NOW)
    with pytest.raises(Invalid, match="not in the trusted keys"):
        TrustStore(None, enforce=True).check(KeyPair.generate().public_key_b64, NOW)


def test_settings_defaults_are_the_embedded_default(tmp_path):
    settings = Settings.from_env({"BEACON_DATA_DIR": str(tmp_path)})
    assert settings.embedded
    assert settings.database_url == f"sqlite:///{tmp_path / 'beacon.db'}"
    assert settings.broker_url == "filesystem://"
    assert (settings.port, settings.max_body_bytes, settings.trust_enforce) == (8090, 1048576, True)
    assert (settings.timestamp_max_skew_minutes, settings.timestamp_max_age_minutes) == (5, 10)


def test_settings_postgres_and_redis():
    settings = Settings.from_env({"DATABASE_URL": "postgres://u@h/db", "REDIS_URL": "redis://h:6379/0"})
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.broker_url == "redis://h:6379/0" and not settings.embedded


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PORT": "eighty"}, "PORT must be an integer"),
        ({"TRUST_ENFORCE": "perhaps"}, "TRUST_ENFORCE must be true or false"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES must be at least 1"),
        ({"NONCE_TTL_MINUTES": "5"}, "NONCE_TTL_MINUTES"),
    ],
)
def test_settings_errors(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)
