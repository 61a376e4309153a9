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
