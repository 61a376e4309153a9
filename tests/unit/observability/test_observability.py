"""Observability without services: settings, Sentry filtering and scrubbing, sampling, Crons
exclusions, request ids, HTTP metrics and the JSON log format."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sentry_sdk.utils import match_regex_list
from werkzeug.exceptions import ClientDisconnected

from app import create_app
from beacon.execution.providers import ProviderError
from beacon.logs import JsonFormatter, bind, log_context
from beacon.observability import metrics
from beacon.observability.errors import DeadlineExceeded, JobCancelled
from beacon.observability.scrub import FILTERED, Scrubber, strip_pii
from beacon.observability.sentry import (
    NEVER_TRACED,
    configured_secrets,
    crons_excluded,
    init_sentry,
    make_before_send,
    make_traces_sampler,
)
from beacon.settings import SettingsError
from beat.schedule import beat_schedule

SECRET = "tok-0123456789abcdef"


def exc_hint(error: BaseException) -> dict:
    return {"exc_info": (type(error), error, None)}


# --- settings -----------------------------------------------------------------------------------


def test_observability_defaults(make_settings):
    settings = make_settings()
    assert settings.sentry_dsn is None and settings.sentry_environment == "development"
    assert settings.sentry_traces_sample_rate == 0.2 and settings.sentry_send_pii is False
    assert settings.sentry_release == "beacon-runner@0.1.0"
    assert settings.sentry_trace_housekeeping is False
    assert (settings.metrics_port, settings.flower_port, settings.flower_basic_auth) == (9091, 5555, ())
    assert (settings.flower_address, settings.flower_allow_anonymous) == ("127.0.0.1", False)


def test_sentry_environment_follows_beacon_env(make_settings):
    assert make_settings(BEACON_ENV="production").sentry_environment == "production"
    assert make_settings(FLY_APP_NAME="beacon-runner").sentry_environment == "production"
    assert make_settings(BEACON_ENV="production", SENTRY_ENVIRONMENT="staging").sentry_environment == "staging"


@pytest.mark.parametrize("env, release", [
    ({"GIT_SHA": "0123456789ABCDEF0123456789abcdef01234567"}, "beacon-runner@0.1.0+0123456789ab"),
    ({"FLY_IMAGE_REF": "registry.fly.io/beacon-runner:deployment-01HZX3Q7"}, "beacon-runner@0.1.0+deployment-01HZX3Q7"),
    ({"FLY_IMAGE_REF": "registry.fly.io/beacon-runner@sha256:9f86d081884c7d659a2feaa0"},
     "beacon-runner@0.1.0+9f86d081884c"),
    ({"FLY_IMAGE_REF": "registry.fly.io/beacon-runner:deployment-1", "GIT_SHA": "abc1234"},
     "beacon-runner@0.1.0+abc1234"),
    ({"FLY_IMAGE_REF": "registry.fly.io/beacon-runner"}, "beacon-runner@0.1.0"),
    ({"FLY_IMAGE_REF": "img", "SENTRY_RELEASE": "beacon@1.2.3"}, "beacon@1.2.3"),
])
def test_release_is_the_version_and_the_commit_without_a_slash(make_settings, env, release):
    found = make_settings(**env).sentry_release
    assert found == release
    assert "/" not in found and "\n" not in found and len(found) <= 200  # what Sentry accepts


def test_git_sha_must_be_a_commit_id(make_settings):
    with pytest.raises(SettingsError, match="GIT_SHA must be a git commit id"):
        make_settings(GIT_SHA="main/../x")


def test_secrets_stay_out_of_the_settings_repr(make_settings):
    settings = make_settings(SENTRY_DSN="https://key@o1.ingest.sentry.io/2", FLOWER_BASIC_AUTH="ops:hunter22")
    assert settings.flower_basic_auth == ("ops:hunter22",)
    assert "hunter22" not in repr(settings) and "ingest.sentry.io" not in repr(settings)


@pytest.mark.parametrize("env, message", [
    ({"FLOWER_BASIC_AUTH": "ops:good,nopassword"}, "FLOWER_BASIC_AUTH must be a comma list of user:password"),
    ({"FLOWER_BASIC_AUTH": ":secret-only"}, "FLOWER_BASIC_AUTH must be a comma list of user:password"),
    ({"SENTRY_TRACES_SAMPLE_RATE": "1.5"}, "SENTRY_TRACES_SAMPLE_RATE must be between 0.0 and 1.0"),
    ({"SENTRY_SEND_PII": "maybe"}, "SENTRY_SEND_PII must be true or false"),
    ({"METRICS_PORT": "-1"}, "METRICS_PORT must be at least 0"),
])
def test_invalid_observability_settings(make_settings, env, message):
    with pytest.raises(SettingsError, match=message) as raised:
        make_settings(**env)
    assert "secret-only" not in str(raised.value)


# --- before_send: expected interruptions are dropped, everything else is reported -----------------


@pytest.mark.parametrize("error", [
    JobCancelled("job-1", 7),
    DeadlineExceeded("job-1", 8),
    ClientDisconnected(),
], ids=["job_cancelled", "deadline_exceeded", "client_disconnected"])
def test_expected_interruptions_are_dropped(error):
    before_send = make_before_send(Scrubber([]), send_pii=False)
    assert before_send({"exception": {"values": [{"type": type(error).__name__}]}}, exc_hint(error)) is None


@pytest.mark.parametrize("error", [
    RuntimeError("boom"),
    ProviderError("http_400", "response", "US", "llama3.2-1b", "openai", "bad request"),
    ConnectionResetError("reset by peer"),
])
def test_everything_else_is_reported(error):
    before_send = make_before_send(Scrubber([]), send_pii=False)
    event = {"message": "something failed"}
    assert before_send(event, exc_hint(error)) == {"message": "something failed"}


def test_log_events_without_an_exception_are_reported():
    assert make_before_send(Scrubber([]), send_pii=False)({"message": "x"}, {}) == {"message": "x"}


# --- scrubbing ----------------------------------------------------------------------------------


def test_secret_keys_lose_their_values_everywhere():
    event = {
        "request": {"headers": {"Authorization": "Bearer x", "X-Api-Key": "k", "Cookie": "a=b", "Accept": "*/*"},
                    "data": {"api_token": "t", "note": "hello"}},
        "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"admin_tokens": "('a',)", "password": "'p'",
                                                                       "count": "3"}}]}}]},
        "breadcrumbs": {"values": [{"data": {"signing_key": "s", "region": "US"}}]},
    }
    scrubbed = Scrubber([]).scrub(event)
    headers = scrubbed["request"]["headers"]
    assert headers == {"Authorization": FILTERED, "X-Api-Key": FILTERED, "Cookie": FILTERED, "Accept": "*/*"}
    assert scrubbed["request"]["data"] == {"api_token": FILTERED, "note": "hello"}
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"] == {
        "admin_tokens": FILTERED, "password": FILTERED, "count": "3"}
    assert scrubbed["breadcrumbs"]["values"][0]["data"] == {"signing_key": FILTERED, "region": "US"}


def test_secret_values_are_cut_out_of_any_string():
    scrubber = Scrubber([SECRET, "abc", None])
    event = {
        "vars": {"candidate": repr(SECRET)},
        "message": f"compared with {SECRET} twice: {SECRET}",
        "logentry": "calling with Authorization: Bearer some.jwt-value and Basic b3BzOnB3",
        "url": "postgresql://beacon:db-pass@db.internal:5432/beacon",
        "short": "abc stays: shorter than four characters is no credential",
    }
    scrubbed = scrubber.scrub(event)
    assert scrubbed["vars"]["candidate"] == f"'{FILTERED}'"
    assert scrubbed["message"] == f"compared with {FILTERED} twice: {FILTERED}"
    assert scrubbed["logentry"] == f"calling with Authorization: Bearer {FILTERED} and Basic {FILTERED}"
    assert scrubbed["url"] == f"postgresql://beacon:{FILTERED}@db.internal:5432/beacon"
    assert scrubbed["short"].startswith("abc stays")


def test_client_ip_and_user_agent_only_with_pii():
    def event() -> dict:
        return {"request": {"headers": {"User-Agent": "curl/8", "X-Forwarded-For": "203.0.113.9", "Accept": "*/*"},
                            "env": {"REMOTE_ADDR": "203.0.113.9", "SERVER_NAME": "api"}},
                "user": {"ip_address": "203.0.113.9"}}

    stripped = strip_pii(event())
    assert stripped["request"]["headers"] == {"Accept": "*/*"}
    assert stripped["request"]["env"] == {"SERVER_NAME": "api"}
    assert "user" not in stripped
    with_pii = make_before_send(Scrubber([]), send_pii=True)(event(), {})
    assert with_pii["request"]["headers"]["User-Agent"] == "curl/8" and with_pii["user"]["ip_address"]


def test_configured_secrets_cover_tokens_urls_flower_and_provider_keys(make_settings, tmp_path, monkeypatch):
    providers = tmp_path / "providers.toml"
    providers.write_text('[regions.US]\nprovider = "openai"\nbase_url = "http://127.0.0.1:1"\napi_key_env = "US_KEY"\n')
    monkeypatch.setenv("US_KEY", "sk-provider-secret")
    settings = make_settings(ADMIN_TOKEN=SECRET, VIEWER_TOKENS="viewer-token-1", FLOWER_BASIC_AUTH="ops:flower-pw",
                             DATABASE_URL="postgresql://beacon:db-pass@db:5432/beacon",
                             REDIS_URL="redis://:redis-pass@cache:6379/0", PROVIDERS_FILE=providers)
    assert configured_secrets(settings) >= {SECRET, "viewer-token-1", "flower-pw", "db-pass", "redis-pass",
                                            "sk-provider-secret"}


# --- sampling and Crons ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(NEVER_TRACED) + ["/health/"])
def test_health_readiness_and_metrics_are_never_traced(path):
    sampler = make_traces_sampler(1.0)
    assert sampler({"wsgi_environ": {"PATH_INFO": path}, "parent_sampled": True}) == 0.0


def test_other_requests_use_the_rate_unless_the_trace_decided():
    sampler = make_traces_sampler(0.2)
    assert sampler({"wsgi_environ": {"PATH_INFO": "/api/v1/jobs"}}) == 0.2
    assert sampler({"celery_job": {"task": "beacon.run_job"}, "parent_sampled": True}) == 1.0
    assert sampler({"celery_job": {"task": "beacon.run_job"}, "parent_sampled": False}) == 0.0


@pytest.mark.parametrize("task", ["beacon.relay_outbox", "beacon.sweep", "beacon.retry_pins", "beacon.purge"])
def test_housekeeping_tasks_are_traced_only_when_asked(task):
    assert make_traces_sampler(1.0)({"celery_job": {"task": task}}) == 0.0
    assert make_traces_sampler(1.0)({"celery_job": {"task": task}, "parent_sampled": True}) == 0.0
    assert make_traces_sampler(0.5, trace_housekeeping=True)({"celery_job": {"task": task}}) == 0.5
    assert make_traces_sampler(0.5)({"celery_job": {"task": "beacon.execute_unit"}}) == 0.5


def test_a_websockets_normal_close_is_not_an_error():
    from beacon.observability.errors import closed_websocket, is_expected

    def raised_in(module: str, error: BaseException) -> BaseException:
        namespace = {"__name__": module}
        exec("def close(error):\n    raise error\n", namespace)  # a frame whose module is ``module``
        try:
            namespace["close"](error)
        except BaseException as caught:  # noqa: BLE001
            return caught
        raise AssertionError("not raised")

    assert is_expected(raised_in("flask_sock", StopIteration()))  # under gunicorn
    assert is_expected(raised_in("flask_sock", ConnectionError()))  # under werkzeug
    assert not closed_websocket(raised_in("app.jobs", StopIteration()))
    assert not is_expected(raised_in("flask_sock", ValueError()))


def test_sub_minute_beat_entries_are_kept_out_of_sentry_crons(make_settings):
    schedule = beat_schedule(make_settings())
    excluded = crons_excluded(schedule)
    assert match_regex_list("relay-outbox", excluded) and match_regex_list("sweep", excluded)
    assert not match_regex_list("purge-expired", excluded), "the */10 crontab is a Crons monitor"
    every_minute = crons_excluded(beat_schedule(make_settings(OUTBOX_RELAY_INTERVAL_SECONDS=60)))
    assert not match_regex_list("relay-outbox", every_minute)


def test_sentry_disabled_without_dsn(make_settings, caplog):
    with caplog.at_level(logging.INFO, logger="beacon.observability.sentry"):
        assert init_sentry(make_settings(), "worker") is False
    assert [r.getMessage() for r in caplog.records] == ["Sentry disabled (no SENTRY_DSN)"]
    with pytest.raises(ValueError, match="unknown role"):
        init_sentry(make_settings(), "scheduler")


# --- request ids, HTTP metrics, JSON logs ---------------------------------------------------------


@pytest.fixture
def client(make_settings):
    flask_app = create_app(make_settings(TRUST_ENFORCE="false"))

    @flask_app.get("/_context")
    def context():
        return dict(log_context.get())

    return flask_app.test_client()


def test_request_id_is_kept_or_generated_and_bound_to_logs(client):
    kept = client.get("/_context", headers={"X-Request-ID": "req-42.a:b"})
    assert kept.headers["X-Request-ID"] == "req-42.a:b" and kept.get_json()["request_id"] == "req-42.a:b"
    generated = client.get("/_context", headers={"X-Request-ID": "bad id\twith spaces"})
    assert generated.headers["X-Request-ID"] != "bad id\twith spaces"
    assert len(generated.headers["X-Request-ID"]) == 32 and generated.get_json()["request_id"] == generated.headers["X-Request-ID"]
    assert client.get("/_context").headers["X-Request-ID"] != generated.headers["X-Request-ID"]
    assert "request_id" not in log_context.get(), "the request's context ends with it"


def count(text: str, name: str, **labels: str) -> float:
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_http_metrics_by_route_template_without_ids(client):
    route = "/api/v1/jobs/<job_id>"
    before = count(client.get("/metrics").get_data(as_text=True), "beacon_http_requests_total", route=route)
    for job_id in ("job-a1", "job-b2", "job-c3"):
        assert client.get(f"/api/v1/jobs/{job_id}").status_code in (404, 503)
    client.get("/no/such/route")
    text = client.get("/metrics").get_data(as_text=True)
    assert count(text, "beacon_http_requests_total", route=route) == before + 3
    assert count(text, "beacon_http_requests_total", route="<unmatched>", status="404") >= 1
    assert "job-a1" not in text and "/no/such/route" not in text


def test_unknown_http_methods_share_one_label():
    metrics.observe_http("BREW", "/coffee", 418, 0.01)
    text = metrics.exposition().decode()
    assert count(text, "beacon_http_requests_total", method="OTHER", route="/coffee") >= 1
    assert 'method="BREW"' not in text


def test_json_log_lines_are_compact_with_level_and_message_first():
    record = logging.LogRecord("beacon.x", logging.INFO, __file__, 1, "Sentry initialized", None, None)
    record.environment = "production"
    token = bind(request_id="r-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        log_context.reset(token)
    assert line.startswith('{"level":"info","message":"Sentry initialized","request_id":"r-1","environment":"production",')
    entry = json.loads(line)
    assert entry["logger"] == "beacon.x" and entry["time"].endswith("Z")
