"""The engine's small pure decisions: the job outcome rule and the retry backoff."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from beacon.execution.engine import job_outcome, retry_delay
from beacon.settings import Settings
from beacon.statuses import Classification, JobStatus, UnitStatus

OK = (UnitStatus.COMPLETED, Classification.SUBSTANTIVE)
REFUSED = (UnitStatus.COMPLETED, Classification.CONTENT_REFUSAL)
FAILED = (UnitStatus.FAILED, Classification.TECHNICAL_FAILURE)
TIMED_OUT = (UnitStatus.TIMEOUT, Classification.TECHNICAL_FAILURE)


def spec(regions=("US", "EU", "APAC"), min_regions=3, min_success_rate=0.67):
    return SimpleNamespace(regions=list(regions), min_regions=min_regions, min_success_rate=min_success_rate)


def units(*rows):
    return [SimpleNamespace(region=region, status=status, classification=classification)
            for region, (status, classification) in rows]


def test_all_answered_completes():
    status, reason = job_outcome(spec(), units(("US", OK), ("EU", OK), ("APAC", OK)))
    assert status == JobStatus.COMPLETED
    assert "3/3 units succeeded" in reason


def test_a_refusal_is_a_success():
    status, _ = job_outcome(spec(), units(("US", OK), ("EU", OK), ("APAC", REFUSED)))
    assert status == JobStatus.COMPLETED


def test_rate_below_minimum_fails():
    status, reason = job_outcome(spec(min_regions=1), units(("US", OK), ("EU", FAILED), ("APAC", TIMED_OUT)))
    assert status == JobStatus.FAILED
    assert "rate 0.33, needed 0.67" in reason


def test_rate_at_the_minimum_completes():
    status, _ = job_outcome(spec(regions=("US", "EU"), min_regions=1, min_success_rate=0.5),
                            units(("US", OK), ("EU", FAILED)))
    assert status == JobStatus.COMPLETED


def test_too_few_regions_with_a_success_fails():
    status, reason = job_outcome(spec(min_regions=2, min_success_rate=0.5),
                                 units(("US", OK), ("US", OK), ("EU", FAILED), ("APAC", FAILED)))
    assert status == JobStatus.FAILED
    assert "1 regions with a success (needed 2)" in reason


def test_min_regions_is_capped_by_the_regions_asked_for():
    status, reason = job_outcome(spec(regions=("US",), min_regions=3, min_success_rate=0.5), units(("US", OK)))
    assert status == JobStatus.COMPLETED
    assert "(needed 1)" in reason


def test_no_units_fails():
    status, _ = job_outcome(spec(), [])
    assert status == JobStatus.FAILED


@pytest.mark.parametrize("attempts", [1, 2, 3, 6, 12])
def test_retry_delay_is_jittered_within_the_capped_exponential(attempts):
    settings = Settings.from_env({"UNIT_RETRY_BASE_SECONDS": "1", "UNIT_RETRY_MAX_SECONDS": "30"})
    ceiling = min(30.0, 2 ** (attempts - 1))
    delays = [retry_delay(settings, attempts) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered, not fixed


# --------------------------------------------------------------------------- retries sized to the job

def _claim(provider_retries=0, deadline_in=600.0, call_timeout=120.0, lease_margin=30.0):
    from datetime import timedelta

    from beacon.execution.engine import Claim
    from beacon.timeutil import utcnow

    now = utcnow()
    return Claim(7, "job-1", "US", "m", "q", "p", attempts=provider_retries + 1, claimed_at=now,
                 call_timeout_s=call_timeout, deadline_at=now + timedelta(seconds=deadline_in),
                 provider_retries=provider_retries, lease_until=now + timedelta(seconds=call_timeout + lease_margin),
                 lease_margin_s=lease_margin)


def _error(code="http_503"):
    from beacon.execution.providers import ProviderError

    return ProviderError(code, "response", "US", "m", "openai", "boom")


def _settings(**env):
    return Settings.from_env({"UNIT_RETRY_BASE_SECONDS": "1", "UNIT_RETRY_MAX_SECONDS": "30", **env})


def test_a_transient_failure_is_retried_with_backoff_and_counted_as_a_call():
    from beacon.execution.engine import _after_failure

    record = _after_failure(_settings(), _claim(provider_retries=2), _error(), "openai")
    assert record["kind"] == "failure" and record["final"] is False
    assert 2 <= record["retry_in"] <= 4  # the third call's backoff: 2**2 jittered down to half
    assert record["failure"]["provider_calls"] == 3 and "retries_ended" not in record["failure"]


def test_max_provider_calls_ends_the_retries_with_the_last_code():
    from beacon.execution.engine import _after_failure

    record = _after_failure(_settings(MAX_PROVIDER_CALLS="3"), _claim(provider_retries=2), _error("timeout"), "openai")
    assert record["final"] is True and record["failure"]["code"] == "timeout"
    assert record["failure"]["retries_ended"] == "max_provider_calls"


def test_no_retry_when_the_deadline_leaves_no_time_for_another_call():
    from beacon.execution.engine import _after_failure

    record = _after_failure(_settings(UNIT_RETRY_BASE_SECONDS="10", UNIT_RETRY_MAX_SECONDS="10"),
                            _claim(deadline_in=5.0), _error(), "openai")
    assert record["final"] is True and record["failure"]["retries_ended"] == "deadline"


def test_a_permanent_failure_is_final_and_a_deadline_cut_is_left_to_finalisation():
    from beacon.execution.engine import _after_failure

    assert _after_failure(_settings(), _claim(), _error("http_400"), "openai")["final"] is True
    assert _after_failure(_settings(), _claim(deadline_in=-1.0), _error("timeout"), "openai")["kind"] == "deadline"


def test_the_call_deadline_is_the_earliest_of_timeout_job_deadline_and_lease_less_margin():
    import time

    from beacon.execution.engine import call_deadline

    assert abs(call_deadline(_claim(call_timeout=20)) - (time.monotonic() + 20)) < 0.5
    assert abs(call_deadline(_claim(call_timeout=20, deadline_in=5)) - (time.monotonic() + 5)) < 0.5
    lease_short = _claim(call_timeout=20, lease_margin=30)
    lease_short = type(lease_short)(**{**vars(lease_short), "lease_margin_s": 40.0})  # lease ends 10 s early
    assert abs(call_deadline(lease_short) - (time.monotonic() + 10)) < 0.5


def test_a_claim_survives_the_round_trip_through_a_retried_message():
    import json

    from beacon.execution.engine import Claim

    claim = _claim(provider_retries=3)
    again = Claim.from_resume(json.loads(json.dumps(claim.to_resume())))
    assert (again.execution_id, again.claimed_at, again.deadline_at, again.attempts, again.provider_retries) == (
        claim.execution_id, claim.claimed_at, claim.deadline_at, claim.attempts, claim.provider_retries)
