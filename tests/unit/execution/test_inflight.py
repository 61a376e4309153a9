"""Per-job Aborts of the calls a worker has in flight (beacon.execution.providers.inflight)."""

from __future__ import annotations

from beacon.execution.providers.inflight import JOB_ENDED, SHUTDOWN, CallAborts


def test_calls_of_one_job_share_an_abort_dropped_with_the_last_call():
    calls = CallAborts()
    with calls.job("a") as first, calls.job("a") as second, calls.job("b") as other:
        assert first is second and first is not other
        assert sorted(calls.job_ids()) == ["a", "b"] and calls.in_flight() == 3
    assert calls.job_ids() == [] and calls.in_flight() == 0


def test_ending_a_job_aborts_its_calls_only():
    calls = CallAborts()
    with calls.job("a") as a, calls.job("b") as b:
        assert calls.end_job("a") is True
        assert a.triggered and a.reason == JOB_ENDED and not b.triggered
        assert calls.end_job("a") is False  # nothing left in flight for it
        with calls.job("a") as later:
            assert not later.triggered  # a later call of the job gets a fresh abort
    assert calls.job_ids() == []


def test_shutdown_aborts_every_call_now_and_later():
    calls = CallAborts()
    with calls.job("a") as a:
        assert calls.shutdown() == 1
        assert a.triggered and a.reason == SHUTDOWN
    assert calls.shutting_down
    with calls.job("b") as b:
        assert b.triggered and b.reason == SHUTDOWN
    assert calls.job_ids() == []
