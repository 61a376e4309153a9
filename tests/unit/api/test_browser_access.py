"""client_address() behind a proxy, the CORS origin patterns and the browser-access settings."""

from __future__ import annotations

import pytest
from flask import Flask

from app import client
from app.browser import compiled_origins, origin_pattern
from app.client import client_address
from app.openapi import document
from app.ratelimit import EXEMPT_RULES
from beacon.settings import Settings, SettingsError

FLY = "172.16.0.0/12,fdaa::/16"


def address(settings: Settings, peer: str, headers: list[tuple[str, str]] | None = None) -> str:
    flask_app = Flask(__name__)
    client.init_app(flask_app, settings)
    with flask_app.test_request_context("/api/v1/jobs", environ_base={"REMOTE_ADDR": peer}, headers=headers or []):
        return client_address()


def test_without_trusted_proxies_the_peer_is_the_client(make_settings):
    settings = make_settings()
    assert address(settings, "198.51.100.4", [("Fly-Client-IP", "203.0.113.9")]) == "198.51.100.4"
    assert address(settings, "198.51.100.4", [("X-Forwarded-For", "203.0.113.9")]) == "198.51.100.4"


def test_the_header_counts_only_from_a_trusted_peer(make_settings):
    settings = make_settings(TRUSTED_PROXY_CIDRS=FLY)
    assert address(settings, "172.16.3.4", [("Fly-Client-IP", "203.0.113.9")]) == "203.0.113.9"
    assert address(settings, "fdaa:0:1:a7b::2", [("Fly-Client-IP", "2001:db8::1")]) == "2001:db8::1"
    assert address(settings, "::ffff:172.31.0.1", [("Fly-Client-IP", "203.0.113.9")]) == "203.0.113.9"
    # Anyone else may send the header; it changes nothing.
    assert address(settings, "198.51.100.4", [("Fly-Client-IP", "203.0.113.9")]) == "198.51.100.4"
    assert address(settings, "172.32.0.1", [("Fly-Client-IP", "203.0.113.9")]) == "172.32.0.1"
    assert address(settings, "fdab::1", [("Fly-Client-IP", "203.0.113.9")]) == "fdab::1"


def test_a_missing_or_invalid_header_falls_back_to_the_peer(make_settings):
    settings = make_settings(TRUSTED_PROXY_CIDRS=FLY)
    assert address(settings, "172.16.3.4") == "172.16.3.4"
    for bad in ("", "not-an-ip", "203.0.113.9; drop table", "203.0.113.300", "unknown"):
        assert address(settings, "172.16.3.4", [("Fly-Client-IP", bad)]) == "172.16.3.4", bad
    assert address(settings, "172.16.3.4", [("Fly-Client-IP", " 203.0.113.9 ")]) == "203.0.113.9"
    assert address(settings, "172.16.3.4", [("Fly-Client-IP", "2001:DB8:0::1")]) == "2001:db8::1"  # canonical form


def test_another_header_and_the_right_most_entry(make_settings):
    settings = make_settings(TRUSTED_PROXY_CIDRS="10.0.0.0/8", TRUSTED_PROXY_HEADER="X-Forwarded-For")
    # The client wrote the left entries itself; the trusted proxy appended the right-most one.
    assert address(settings, "10.1.2.3", [("X-Forwarded-For", "1.2.3.4, 203.0.113.9")]) == "203.0.113.9"
    assert address(settings, "10.1.2.3", [("X-Forwarded-For", "1.2.3.4"), ("X-Forwarded-For", "203.0.113.7")]) \
        == "203.0.113.7"
    assert address(settings, "10.1.2.3", [("Fly-Client-IP", "203.0.113.9")]) == "10.1.2.3"


def test_origin_patterns_are_anchored_and_a_wildcard_is_one_label():
    assert origin_pattern("https://*.netlify.app") == r"^https://[a-z0-9-]+\.netlify\.app$"
    assert origin_pattern("https://projectbeacon.netlify.app") == r"^https://projectbeacon\.netlify\.app$"
    [wild, exact, preview, local] = compiled_origins((
        "https://*.projectbeacon.example", "https://projectbeacon.netlify.app",
        "https://deploy-preview-*--projectbeacon.netlify.app", "http://localhost:5173",
    ))
    assert wild.match("https://app.projectbeacon.example") and wild.match("https://APP.projectbeacon.example")
    for origin in ("https://projectbeacon.example", "https://a.b.projectbeacon.example", "https://.projectbeacon.example",
                   "https://app.projectbeacon.example.evil.com", "http://app.projectbeacon.example",
                   "https://app.projectbeacon.example:8443", "https://appXprojectbeacon.example"):
        assert not wild.match(origin), origin
    assert exact.match("https://projectbeacon.netlify.app")
    for origin in ("https://projectbeacon.netlify.app.evil.com", "https://evilprojectbeacon.netlify.app",
                   "https://projectbeaconXnetlify.app", "https://projectbeacon.netlify.app:443"):
        assert not exact.match(origin), origin
    assert preview.match("https://deploy-preview-42--projectbeacon.netlify.app")
    assert not preview.match("https://deploy-preview-42.evil--projectbeacon.netlify.app")
    assert local.match("http://localhost:5173") and not local.match("http://localhost:5174")


def test_origin_settings_are_normalised(make_settings):
    settings = make_settings(CORS_ALLOWED_ORIGINS=" https://ProjectBeacon.Netlify.app , https://x.example:443,"
                                                  "http://localhost:5173,https://x.example,http://[::1]:3000")
    assert settings.cors_allowed_origins == (
        "https://projectbeacon.netlify.app", "https://x.example", "http://localhost:5173", "http://[::1]:3000")
    assert make_settings().cors_allowed_origins == ()


@pytest.mark.parametrize("bad", [
    "*", "https://*", "https://*.app", "https://example.*", "https://*.example.*", "projectbeacon.netlify.app",
    "https://projectbeacon.netlify.app/", "https://projectbeacon.netlify.app/portal", "ftp://x.example",
    "https://a..example", "https://x.example:0", "https://x.example:70000", "https://user@x.example", "null",
    "https://x_y.example", "http://[::g]:80", "https://**.example.org",
])
def test_a_bad_origin_names_the_variable(make_settings, bad):
    with pytest.raises(SettingsError, match="CORS_ALLOWED_ORIGINS"):
        make_settings(CORS_ALLOWED_ORIGINS=bad)


def test_rate_limit_setting(make_settings):
    assert Settings.from_env({}).rate_limit_default == "600/minute"
    assert make_settings().rate_limit_default is None  # the test harness turns it off
    assert make_settings(RATE_LIMIT_DEFAULT="Off").rate_limit_default is None
    assert make_settings(RATE_LIMIT_DEFAULT="10/second;600/minute").rate_limit_default == "10/second;600/minute"
    for bad in ("600", "lots", "0/minute", "5/fortnight", "-1/minute"):
        with pytest.raises(SettingsError, match="RATE_LIMIT_DEFAULT"):
            make_settings(RATE_LIMIT_DEFAULT=bad)


def test_proxy_settings(make_settings):
    defaults = Settings.from_env({})
    assert defaults.trusted_proxy_cidrs == () and defaults.trusted_proxy_header == "Fly-Client-IP"
    assert [str(n) for n in make_settings(TRUSTED_PROXY_CIDRS=FLY).trusted_proxy_cidrs] == ["172.16.0.0/12", "fdaa::/16"]
    for bad in ("172.16.0.1/12", "nope", "10.0.0.0/33"):
        with pytest.raises(SettingsError, match="TRUSTED_PROXY_CIDRS"):
            make_settings(TRUSTED_PROXY_CIDRS=bad)
    with pytest.raises(SettingsError, match="TRUSTED_PROXY_HEADER"):
        make_settings(TRUSTED_PROXY_HEADER="Fly Client IP")


def test_every_counted_operation_documents_the_429():
    for path, operations in document()["paths"].items():
        for method, operation in operations.items():
            if path in EXEMPT_RULES:
                assert "429" not in operation["responses"], (method, path)
                continue
            limited = operation["responses"].get("429")
            assert limited is not None, (method, path)
            assert "rate_limit_exceeded" in limited["description"]
            assert {"Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
                limited["headers"]), (method, path)
