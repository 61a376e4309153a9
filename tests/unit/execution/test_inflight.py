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


# --------------------------------------------------------------------------- region slots


def test_region_slots_default_to_a_fair_share_and_never_wait():
    from beacon.execution.providers.inflight import RegionSlots

    slots = RegionSlots()
    assert slots.try_take("EU")  # unconfigured: unlimited
    slots.give_back("EU")
    assert slots.configure({"US": None, "EU": None, "APAC": 2}, concurrency=16) == {"US": 6, "EU": 6, "APAC": 2}
    assert [slots.try_take("APAC") for _ in range(3)] == [True, True, False]  # the third is refused at once
    assert slots.try_take("US") and slots.in_use("US") == 1  # another region is not held up by APAC
    slots.give_back("APAC")
    assert slots.try_take("APAC") and slots.in_use("APAC") == 2


def test_a_put_back_unit_counts_as_waiting_until_taken_up():
    from beacon.execution.providers.inflight import RegionSlots

    changes = []
    slots = RegionSlots()
    slots.on_change = lambda region, in_use, waiting: changes.append((region, in_use, waiting))
    slots.configure({"EU": 1}, concurrency=4)
    assert slots.try_take("EU", 1)
    assert not slots.try_take("EU", 2)
    slots.waited("EU", 2)
    assert slots.waiting("EU") == 1
    slots.give_back("EU")
    assert slots.try_take("EU", 2) and slots.waiting("EU") == 0
    assert changes == [("EU", 1, 0), ("EU", 1, 1), ("EU", 0, 1), ("EU", 1, 0)]
    assert RegionSlots.fair_share(16, 3) == 6 and RegionSlots.fair_share(3, 5) == 1


def test_a_put_back_waits_about_half_the_time_a_slot_of_its_region_is_held():
    from beacon.execution.providers.inflight import PUT_BACK_MAX_SECONDS, PUT_BACK_MIN_SECONDS, RegionSlots

    slots = RegionSlots()
    slots.configure({"FAST": 1, "SLOW": 1}, concurrency=2)
    assert slots.retry_after("FAST") == PUT_BACK_MAX_SECONDS / 2  # nothing known yet
    for region, held in (("FAST", 0.2), ("SLOW", 30.0)):
        assert slots.try_take(region)
        slots.give_back(region, held)
    assert slots.retry_after("FAST") == 0.1 and slots.retry_after("SLOW") == PUT_BACK_MAX_SECONDS
    assert slots.try_take("FAST")
    slots.give_back("FAST", 0.0)
    assert PUT_BACK_MIN_SECONDS <= slots.retry_after("FAST") < 0.1
