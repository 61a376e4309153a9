"""Lanes (``beacon.execution.lanes``): a delivery that goes on with its job's next pending units of
the same region, on real Postgres with the built-in simulator answering at once.

No Celery here: each unit is stepped as ``execute_unit`` steps it (``engine.step_unit``) and the
lane's dispatches are recorded instead of published, so each test sees exactly which messages a
lane would send. The worker-level behaviour (lanes forking so slow units run side by side) is in
``test_engine.py``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta
from typing import Iterator

import pytest
from sqlalchemy import select, update

from beacon.crypto.signing import KeyPair
from beacon.db import database_for
from beacon.execution import engine, regions
from beacon.execution.lanes import run_lane
from beacon.models import Bundle, Execution, Job
from beacon.timeutil import utcnow
from tests.factories import seed_answered_job


class Lanes:
    """A running job of four pending units in US and four in EU, and a way to run a lane of it."""

    def __init__(self, db, settings, job_id: str):  # noqa: ANN001
        self.db, self.settings, self.job_id = db, settings, job_id
        self.registry = regions.provider_registry(settings)
        self.dispatched: list[tuple[int, str, float]] = []
        self.sent = threading.Event()
        self.steps: list[int] = []
        self.after_step = lambda unit_id: None

    def ids(self, region: str) -> list[int]:
        with self.db.session() as session:
            return sorted(session.scalars(select(Execution.id).where(Execution.job_id == self.job_id,
                                                                     Execution.region == region)))

    def statuses(self, region: str) -> list[str]:
        with self.db.session() as session:
            return [u.status for u in session.scalars(select(Execution).where(
                Execution.job_id == self.job_id, Execution.region == region).order_by(Execution.id))]

    def run(self, region: str, first: int | None = None, stopping=lambda: False,  # noqa: ANN001
            fork_after: float = 3600, in_call=lambda claim: None) -> engine.Outcome:  # noqa: ANN001
        """A lane of ``region`` from ``first`` (default: the region's first unit). ``in_call(claim)``
        runs inside the provider call, as a slow provider would wait; by default no call waits long
        enough to fork."""
        def dispatch(execution_id: int, unit_region: str, countdown: float) -> None:
            self.dispatched.append((execution_id, unit_region, countdown))
            self.sent.set()

        def step(unit_id: int, around_call, resume):  # noqa: ANN001, ANN202
            self.steps.append(unit_id)

            @contextmanager
            def calling(claim) -> Iterator[None]:  # noqa: ANN001
                with around_call(claim):
                    in_call(claim)
                    yield

            outcome = engine.step_unit(self.db, self.settings, self.registry, unit_id, dispatch, around_call=calling,
                                       resume=resume)
            self.after_step(unit_id)
            return outcome

        first = first if first is not None else self.ids(region)[0]
        return run_lane(self.db, self.job_id, region, first, step, dispatch, stopping=stopping,
                        fork_after=fork_after)


@pytest.fixture
def lanes(make_settings, clean_db, keypair, tmp_path) -> Lanes:
    KeyPair.generate().save(tmp_path / "runner.key")
    settings = make_settings(DATABASE_URL=clean_db, RUNNER_SIGNING_KEY=tmp_path / "runner.key", LOG_LEVEL="WARNING")
    db = database_for(clean_db)
    job_id = seed_answered_job(db, settings, keypair, ["math_basic", "geography_basic"], regions=("US", "EU"),
                               models=("llama3.2-1b", "mistral-7b"))
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(provider_timeout_ms=30_000))
        session.execute(update(Execution).where(Execution.job_id == job_id).values(
            status="pending", attempts=0, output=None, classification=None, completed_at=None,
            dispatched_at=utcnow() - timedelta(seconds=1)))
    return Lanes(db, settings, job_id)


def finalised_once(db, job_id: str) -> None:  # noqa: ANN001
    with db.session() as session:
        assert session.get(Job, job_id).status == "completed"
        assert len(session.scalars(select(Bundle).where(Bundle.job_id == job_id)).all()) == 1


def test_a_lane_runs_its_regions_quick_units_in_one_delivery(lanes):
    us, eu = lanes.ids("US"), lanes.ids("EU")
    assert lanes.run("US").status == "completed"
    assert lanes.steps == us, "every US unit, in order, by this one delivery"
    assert lanes.dispatched == [], "no fork: no unit was in hand long enough"
    assert lanes.statuses("US") == ["completed"] * 4 and lanes.statuses("EU") == ["pending"] * 4
    with lanes.db.session() as session:
        assert session.get(Job, lanes.job_id).status == "running"

    lanes.steps = []
    assert lanes.run("EU").status == "completed"
    assert lanes.steps == eu
    finalised_once(lanes.db, lanes.job_id)

    lanes.steps = []  # a lane message delivered late: nothing left to run
    assert lanes.run("US", first=us[1]).status == "skipped"
    assert lanes.steps == [us[1]] and lanes.dispatched == []
    finalised_once(lanes.db, lanes.job_id)


def test_a_slow_unit_forks_the_lane_once(lanes):
    """The first unit's call waits until the fork has gone out (as a slow provider keeps the lane):
    a lane message for the next pending unit, sent once; the lane still runs its own units on."""
    us = lanes.ids("US")

    def slow(claim) -> None:  # noqa: ANN001
        assert lanes.sent.wait(timeout=30), "no fork while the unit was in hand"

    assert lanes.run("US", fork_after=0.01, in_call=slow).status == "completed"
    assert lanes.dispatched == [(us[1], "US", 0)]
    assert lanes.steps == us and lanes.statuses("US") == ["completed"] * 4


def test_a_lane_leaves_a_unit_waiting_out_its_backoff(lanes):
    """A unit a retry (or a put-back) stamped to run later is its own message's, not the lane's."""
    us = lanes.ids("US")
    with lanes.db.session() as session:
        session.execute(update(Execution).where(Execution.id == us[2]).values(
            dispatched_at=utcnow() + timedelta(minutes=5)))
    lanes.run("US")
    assert lanes.steps == [us[0], us[1], us[3]]
    assert lanes.statuses("US") == ["completed", "completed", "pending", "completed"]


def test_a_lane_stops_at_a_unit_that_is_not_its_to_run(lanes):
    """The job cancelled after the lane's first unit: the next claim fails and the lane ends there,
    leaving the rest pending (it does not go round the units it cannot claim)."""
    us = lanes.ids("US")

    def cancel(unit_id: int) -> None:
        with lanes.db.session() as session:
            session.execute(update(Job).where(Job.id == lanes.job_id).values(status="cancelled"))

    lanes.after_step = cancel
    assert lanes.run("US").status == "skipped"
    assert lanes.steps == [us[0], us[1]]
    assert lanes.statuses("US") == ["completed", "pending", "pending", "pending"]


def test_a_lane_takes_no_further_unit_once_the_worker_is_stopping(lanes):
    us = lanes.ids("US")
    assert lanes.run("US", stopping=lambda: True).status == "completed"
    assert lanes.steps == [us[0]]
    assert lanes.statuses("US") == ["completed", "pending", "pending", "pending"]


def test_a_lane_delivered_again_goes_on_from_a_unit_already_done(lanes):
    """A lane message retried after a database outage names the unit it had reached, which may have
    been recorded meanwhile: the lane goes on with the units after it."""
    us = lanes.ids("US")
    assert engine.run_unit(lanes.db, lanes.settings, lanes.registry, us[0]).status == "completed"
    lanes.run("US", first=us[0])
    assert lanes.steps == us
    assert lanes.statuses("US") == ["completed"] * 4
