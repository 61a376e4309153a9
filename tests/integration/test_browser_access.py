"""Browser access over real HTTP: CORS for the portal's origins, security headers, the per-client
rate limit on real Redis (429 envelope, exemptions) and its fail-open when that Redis is down or hung."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
import requests
import sentry_sdk

from app import create_app
from app.ratelimit import KEY_PREFIX
from beacon.crypto.signing import KeyPair
from tests.factories import body, make_spec
from tests.sentry_sink import SentrySink
from tests.support import OwnRedis, serve_wsgi

PORTAL = "https://projectbeacon.netlify.app"
ORIGINS = f"{PORTAL},https://*.projectbeacon.example"
ADMITTED = [PORTAL, "https://app.projectbeacon.example", "https://pr-42.projectbeacon.example"]
REFUSED = [
    "https://projectbeacon.netlify.app.evil.com",  # the portal's name as a prefix of another domain
    "https://evilprojectbeacon.netlify.app",  # another Netlify site whose name ends like the portal's
    "https://anetlify.app",
    "http://projectbeacon.netlify.app",  # other scheme
    "https://projectbeacon.netlify.app:8443",  # other port
    "https://projectbeacon.example",  # the wildcard needs a label
    "https://a.b.projectbeacon.example",  # … exactly one
    "https://app.projectbeacon.example.evil.com",
    "https://appprojectbeacon.example",
    "http://app.projectbeacon.example",
    "https://app.projectbeacon.example:444",
    "null",
]
SECURITY = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'",
}
JSON = {"Content-Type": "application/json"}


def preflight(base: str, origin: str, path: str = "/api/v1/jobs", method: str = "POST",
              headers: str = "content-type,authorization,idempotency-key,x-request-id") -> requests.Response:
    return requests.options(f"{base}{path}", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers,
    }, timeout=10)


def assert_security_headers(response: requests.Response, production: bool = False) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.request.url, name, dict(response.headers))
    assert ("Strict-Transport-Security" in response.headers) is production


@pytest.fixture
def browser_settings(make_settings, clean_db, redis_urls, trusted_keys_file):
    def build(**env):
        return make_settings(DATABASE_URL=clean_db, CELERY_BROKER_URL=redis_urls["broker"],
                             RATE_LIMIT_REDIS_URL=redis_urls["limits"], TRUSTED_KEYS_FILE=trusted_keys_file,
                             CORS_ALLOWED_ORIGINS=ORIGINS, **env)

    return build


@pytest.fixture
def api(browser_settings):
    with serve_wsgi(create_app(browser_settings())) as base:
        yield base


# ---------------------------------------------------------------------------------------------- CORS


@pytest.mark.parametrize("origin", ADMITTED)
def test_an_allowed_origin_gets_cors_on_preflight_and_request(api, origin):
    answer = preflight(api, origin)
    assert answer.status_code == 204 and answer.content == b""
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert answer.headers.get("Vary") == "Origin"
    assert set(answer.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "POST"}
    allowed = {h.strip().lower() for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"content-type", "authorization", "idempotency-key", "x-request-id"}
    assert "Access-Control-Allow-Credentials" not in answer.headers
    assert_security_headers(answer)

    got = requests.get(f"{api}/api/v1/jobs", headers={"Origin": origin}, timeout=10)
    assert got.status_code == 200, got.text
    assert got.headers["Access-Control-Allow-Origin"] == origin
    exposed = {h.strip() for h in got.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"X-Request-ID", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


def test_an_allowed_origin_can_read_error_envelopes(api):
    answer = requests.post(f"{api}/api/v1/jobs", data=b"{not json", headers={**JSON, "Origin": PORTAL}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error_code"] == "invalid_json"
    assert answer.headers["Access-Control-Allow-Origin"] == PORTAL
    missing = requests.get(f"{api}/api/v1/jobs/nope", headers={"Origin": PORTAL}, timeout=10)
    assert missing.status_code == 404 and missing.headers["Access-Control-Allow-Origin"] == PORTAL


def test_a_signed_submission_from_the_portal_origin(api, keypair):
    answer = requests.post(f"{api}/api/v1/jobs", data=body(make_spec(keypair)),
                           headers={**JSON, "Origin": PORTAL, "Idempotency-Key": "portal-1"}, timeout=10)
    assert answer.status_code == 202, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == PORTAL


@pytest.mark.parametrize("origin", REFUSED)
def test_a_look_alike_origin_gets_no_cors(api, origin):
    answer = preflight(api, origin)
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "Access-Control-Allow-Headers" not in answer.headers
    got = requests.get(f"{api}/api/v1/jobs", headers={"Origin": origin}, timeout=10)
    assert got.status_code == 200  # CORS is the browser's check: the server only withholds the grant
    assert "Access-Control-Allow-Origin" not in got.headers
    assert "Access-Control-Expose-Headers" not in got.headers
    assert got.headers["Vary"] == "Origin"  # a cache keeps the portal's answer apart


def test_no_origins_configured_means_no_cors(make_settings, clean_db):
    with serve_wsgi(create_app(make_settings(DATABASE_URL=clean_db))) as base:
        answer = preflight(base, PORTAL)
        assert answer.status_code == 204
        assert "Access-Control-Allow-Origin" not in answer.headers
        assert "Access-Control-Allow-Origin" not in requests.get(f"{base}/api/v1/jobs", headers={"Origin": PORTAL},
                                                                 timeout=10).headers


# ------------------------------------------------------------------------------------ security headers


def test_security_headers_on_every_kind_of_response(api):
    for response in (
        requests.get(f"{api}/health/live", timeout=10),
        requests.get(f"{api}/api/v1/jobs", timeout=10),
        requests.get(f"{api}/openapi.json", timeout=10),
        requests.get(f"{api}/metrics", timeout=10),
        requests.get(f"{api}/no/such/route", timeout=10),
        requests.post(f"{api}/api/v1/jobs", data=b"x", headers={"Content-Type": "text/plain"}, timeout=10),
        preflight(api, PORTAL),
    ):
        assert_security_headers(response)
        assert response.headers.get("X-Request-ID")


def test_hsts_only_in_production(browser_settings, tmp_path):
    key = tmp_path / "runner-key"
    KeyPair.generate().save(key)
    with serve_wsgi(create_app(browser_settings(BEACON_ENV="production", RUNNER_SIGNING_KEY=key))) as base:
        for response in (requests.get(f"{base}/health/live", timeout=10), requests.get(f"{base}/api/v1/jobs", timeout=10)):
            assert_security_headers(response, production=True)
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")


# ------------------------------------------------------------------------------------------ rate limit


def test_a_burst_over_the_limit_gets_429_while_health_keeps_answering(browser_settings, redis_urls):
    settings = browser_settings(RATE_LIMIT_DEFAULT="5/minute")
    with serve_wsgi(create_app(settings)) as base:
        for _ in range(3):  # preflights are not counted
            assert preflight(base, PORTAL).status_code == 204
        for sent in range(1, 6):
            answer = requests.get(f"{base}/api/v1/jobs", headers={"Origin": PORTAL}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.headers["X-RateLimit-Limit"] == "5"
            assert answer.headers["X-RateLimit-Remaining"] == str(5 - sent)
            assert "Retry-After" not in answer.headers
        limited = requests.get(f"{base}/api/v1/questions", headers={"Origin": PORTAL}, timeout=10)
        assert limited.status_code == 429
        payload = limited.json()
        assert payload["error_code"] == "rate_limit_exceeded" and payload["error"]
        assert payload["details"]["limit"] == "5 per 1 minute"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert payload["details"]["retry_after_seconds"] == pytest.approx(int(limited.headers["Retry-After"]), abs=1)
        assert limited.headers["X-RateLimit-Limit"] == "5" and limited.headers["X-RateLimit-Remaining"] == "0"
        assert int(limited.headers["X-RateLimit-Reset"]) > time.time()
        assert limited.headers["Access-Control-Allow-Origin"] == PORTAL  # the portal can read why
        assert limited.headers.get("X-Request-ID")
        assert_security_headers(limited)
        # POST is the same client's budget (one limit on the whole API).
        assert requests.post(f"{base}/api/v1/jobs", data=b"{}", headers=JSON, timeout=10).status_code == 429

        for _ in range(20):  # health, metrics and preflights are never limited
            for path in ("/health/live", "/api/v1/health/live", "/health/ready"):
                answer = requests.get(f"{base}{path}", timeout=10)
                assert answer.status_code == 200, (path, answer.text)
                assert "X-RateLimit-Limit" not in answer.headers
        assert requests.get(f"{base}/metrics", timeout=10).status_code == 200
        assert preflight(base, PORTAL).status_code == 204

    keys = redis.Redis.from_url(redis_urls["limits"]).keys(f"{KEY_PREFIX}:*")
    assert keys, "the counters live in the limits Redis"


def test_the_limit_is_per_client_address(browser_settings):
    """Behind a trusted proxy each Fly-Client-IP is its own client; a spoofed header from elsewhere is not."""
    settings = browser_settings(RATE_LIMIT_DEFAULT="2/minute", TRUSTED_PROXY_CIDRS="127.0.0.0/8")
    with serve_wsgi(create_app(settings)) as base:
        def get(client: str) -> int:
            return requests.get(f"{base}/api/v1/questions", headers={"Fly-Client-IP": client}, timeout=10).status_code

        assert [get("203.0.113.7") for _ in range(3)] == [200, 200, 429]
        assert [get("203.0.113.8") for _ in range(3)] == [200, 200, 429]
    untrusted = browser_settings(RATE_LIMIT_DEFAULT="2/minute", TRUSTED_PROXY_CIDRS="10.0.0.0/8")
    with serve_wsgi(create_app(untrusted)) as base:
        codes = [requests.get(f"{base}/api/v1/questions", headers={"Fly-Client-IP": f"203.0.113.{i}"},
                              timeout=10).status_code for i in range(10, 13)]
        assert codes == [200, 200, 429], "the peer is not a trusted proxy: its header changes nothing"


def test_ingest_counts_signature_failures_per_client_address(browser_settings, keypair):
    settings = browser_settings(TRUSTED_PROXY_CIDRS="127.0.0.0/8", RATE_LIMIT_IP_PER_MINUTE=1,
                                RATE_LIMIT_KEY_PER_MINUTE=100)

    def tampered() -> bytes:
        spec = make_spec(keypair)
        spec["benchmark"]["name"] = "tampered"
        return body(spec)

    with serve_wsgi(create_app(settings)) as base:
        def post(client: str) -> requests.Response:
            return requests.post(f"{base}/api/v1/jobs", data=tampered(), headers={**JSON, "Fly-Client-IP": client},
                                 timeout=10)

        assert post("198.51.100.1").json()["error_code"] == "signature_mismatch"
        blocked = post("198.51.100.1")
        assert blocked.status_code == 429 and blocked.json()["details"]["limit"] == "ip"
        assert post("198.51.100.2").json()["error_code"] == "signature_mismatch"


def test_sentry_user_ip_is_the_client_address(make_settings, clean_db):
    """With SENTRY_SEND_PII the event's IP is client_address(), not an X-Forwarded-For the client made up."""
    sink = SentrySink()
    token = "browser-access-admin-token"
    settings = make_settings(DATABASE_URL=clean_db, SENTRY_DSN=sink.dsn, SENTRY_SEND_PII="true", ADMIN_TOKEN=token,
                             TRUSTED_PROXY_CIDRS="127.0.0.0/8")
    try:
        flask_app = create_app(settings)
        with serve_wsgi(flask_app) as base:
            answer = requests.post(f"{base}/admin/test-sentry", timeout=10, headers={
                "Authorization": f"Bearer {token}", "X-Request-ID": "client-ip-1",
                "Fly-Client-IP": "203.0.113.44", "X-Forwarded-For": "192.0.2.66"})
        assert answer.status_code == 500 and answer.json()["error_code"] == "sentry_test"
        sentry_sdk.flush(timeout=10)
        event = sink.wait_for_event(lambda e: e.get("tags", {}).get("request_id") == "client-ip-1", "the test event")
        assert event["user"]["ip_address"] == "203.0.113.44"
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)
        sink.close()


# ---------------------------------------------------------------------------------- fail open on Redis


def latencies(base: str, count: int) -> list[float]:
    took = []
    for _ in range(count):
        started = time.perf_counter()
        answer = requests.get(f"{base}/api/v1/questions", timeout=10)
        took.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return took


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def test_a_hung_limiter_redis_fails_open_fast(make_settings, clean_db, own_redis):
    """SIGSTOP the limiter's Redis: connections still open (the kernel accepts them) but nothing answers.
    Every request must still succeed, each within 0.5 s (a correctness bound on fail-open, not a benchmark)."""
    settings = make_settings(DATABASE_URL=clean_db, RATE_LIMIT_REDIS_URL=own_redis.url, RATE_LIMIT_DEFAULT="600/minute")
    with serve_wsgi(create_app(settings)) as base:
        latencies(base, 3)  # pooled connections to a live Redis, which holds the counters
        assert redis.Redis(port=own_redis.port).keys(f"{KEY_PREFIX}:*")
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        took = latencies(base, 20)
        assert p99(took) <= 0.5, f"p99 {p99(took):.3f} s with the limiter's Redis hung: {took}"
        print(f"hung limiter Redis: p99 {p99(took) * 1000:.0f} ms, max {max(took) * 1000:.0f} ms over {len(took)}")


def test_a_dead_limiter_redis_fails_open(make_settings, clean_db, own_redis):
    settings = make_settings(DATABASE_URL=clean_db, RATE_LIMIT_REDIS_URL=own_redis.url, RATE_LIMIT_DEFAULT="600/minute")
    with serve_wsgi(create_app(settings)) as base:
        latencies(base, 3)
        own_redis.stop()
        took = latencies(base, 20)
        assert p99(took) <= 0.5, took
