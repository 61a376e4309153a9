"""Role tokens: the highest role a token grants, 401 without one, 403 below the needed role."""

from __future__ import annotations

import pytest

from beacon.errors import Forbidden, Unauthorized
from beacon.operations.access import Actor, bearer_token, require_role, role_for_token
from beacon.settings import Settings

SETTINGS = Settings.from_env({"VIEWER_TOKENS": "v1", "OPERATOR_TOKENS": "o1,o2", "ADMIN_TOKENS": "a1",
                              "ADMIN_TOKEN": "a2"})


@pytest.mark.parametrize("token, role", [("v1", "viewer"), ("o2", "operator"), ("a1", "admin"), ("a2", "admin"),
                                         ("nope", None), (None, None), ("", None)])
def test_role_for_token(token, role):
    assert role_for_token(SETTINGS, token) == role


def test_bearer_token_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_require_role_orders_the_roles():
    assert require_role(SETTINGS, "Bearer a1", "operator") == "admin"
    assert require_role(SETTINGS, "Bearer o1", "operator") == "operator"
    with pytest.raises(Forbidden):
        require_role(SETTINGS, "Bearer v1", "operator")
    with pytest.raises(Unauthorized):
        require_role(SETTINGS, "Bearer wrong", "viewer")
    with pytest.raises(Unauthorized):
        require_role(SETTINGS, None, "viewer")


def test_actor_records_who_without_the_secret():
    by_token = Actor.for_role("operator", "o1")
    by_key = Actor.for_key("cHVibGlj")
    assert (by_token.kind, by_token.role) == ("role", "operator")
    assert (by_key.kind, by_key.role, by_key.name) == ("key", None, "cHVibGlj")
    assert "o1" not in by_token.fingerprint and len(by_token.fingerprint) == 12
