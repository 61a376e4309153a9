"""Lanes: one ``execute_unit`` delivery that runs a job's units of one region one after another.

A job starts with one lane message per region, naming the region's first unit (``start_job``).
The lane runs that unit, then the job's next pending unit of the region, and so on, so units
that answer quickly cost one delivery between many instead of one each (Celery's consumer,
the task's events and the broker's round trips per message are most of a quick unit's cost).

Units that are slow to answer must still run side by side. So a lane forks: when its unit's
provider call is still waiting ``FORK_AFTER_SECONDS`` after it began, a lane message naming the
next pending unit is sent (from this process's fork thread, Celery's timer), and the new lane forks in turn at
its own slow call, up to the region's slots. A lane forks once; a lane whose units answer
quickly never does.

Each unit is stepped exactly as a unit message is (``engine.step_unit``: the slot, the claim and
its lease, the call, the recording, the finalisation), so the engine's guarantees hold per unit.
The lane only chooses which unit comes next: a pending one whose ``dispatched_at`` has come (a
retry's backoff and a put-back stamp it ahead), lowest id first. Two lanes may pick the same unit;
the claim lets one of them have it. Pending units left behind by a lane that died are the
sweeper's, as any lost dispatch (``PENDING_REDISPATCH_SECONDS``).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator

from celery.utils.timer2 import Timer
from sqlalchemy import bindparam, select

from beacon.db import Database
from beacon.execution.claims import Claim
from beacon.execution.engine import AroundCall, Outcome
from beacon.execution.store import NOW, UNITS, DispatchUnit
from beacon.statuses import UnitOutcome, UnitStatus
from beacon.timeutil import utcnow

log = logging.getLogger(__name__)

#: A lane forks when its unit's provider call has waited this long: ten times what a whole quick
#: unit (claim, call, record) costs here, and a small delay for units that wait seconds.
FORK_AFTER_SECONDS = 0.02

#: The outcomes after which a lane goes on to the next unit: the unit ran.
_GOES_ON = (UnitOutcome.COMPLETED, UnitOutcome.FAILED, UnitOutcome.DEAD_LETTERED, UnitOutcome.RETRY)

_NEXT_PENDING = (
    select(UNITS.c.id)
    .where(UNITS.c.job_id == bindparam("job_id"), UNITS.c.region == bindparam("region"),
           UNITS.c.status == UnitStatus.PENDING, UNITS.c.dispatched_at <= NOW, UNITS.c.id != bindparam("besides"))
    .order_by(UNITS.c.id)
    .limit(1)
)

# step(execution_id, around_call, resume) steps one unit of the lane: ``engine.step_unit`` with the
# delivery's settings, and ``around_call`` (the lane's fork timer) around the provider call.
LaneStep = Callable[[int, AroundCall, "dict | None"], Outcome]


def next_pending(db: Database, job_id: str, region: str, besides: int) -> int | None:
    """The job's next unit of ``region`` that is pending and may run now, other than ``besides``."""
    rows = db.run(_NEXT_PENDING, {"job_id": job_id, "region": region, "besides": besides, "now": utcnow()})
    return rows[0].id if rows else None


def run_lane(db: Database, job_id: str, region: str, execution_id: int, step: LaneStep, dispatch: DispatchUnit,
             resume: dict | None = None, stopping: Callable[[], bool] = lambda: False,
             fork_after: float = FORK_AFTER_SECONDS) -> Outcome:
    """One lane delivery, from ``execution_id`` (``resume``: its unit's, from a delivery the
    database cut short); returns the last unit's outcome.

    It ends when no unit is left that may run now; when ``stopping()`` (the worker is shutting
    down); when a unit is put back for want of a slot or rerouted (its message, sent with the
    lane, carries it on); or at a unit that was not its to run (another delivery's, or the job is
    over), except its own first unit, so a lane message delivered again after a database outage
    goes on from the unit it had reached."""
    lane = _Lane(db, job_id, region, dispatch, fork_after)
    current, first = execution_id, True
    while True:
        outcome = step(current, lane.calling, resume)
        goes_on = outcome.status in _GOES_ON or (first and outcome.status == UnitOutcome.SKIPPED)
        if not goes_on or stopping():
            return outcome
        following = next_pending(db, job_id, region, current)
        if following is None:
            return outcome
        current, first, resume = following, False, None


class _Lane:
    """A lane's fork: set to go off at each provider call until one has been sent, called off when
    the call ends first (``forked`` is set by the fork thread, read by the lane's)."""

    def __init__(self, db: Database, job_id: str, region: str, dispatch: DispatchUnit, fork_after: float):
        self.db, self.job_id, self.region, self.dispatch, self.fork_after = db, job_id, region, dispatch, fork_after
        self.forked = False

    @contextmanager
    def calling(self, claim: Claim) -> Iterator[None]:
        if self.forked:
            yield
            return
        due = _FORKS.call_after(self.fork_after, self._fork, (claim.execution_id,))
        try:
            yield
        finally:
            due.cancel()

    def _fork(self, execution_id: int) -> None:
        following = next_pending(self.db, self.job_id, self.region, execution_id)
        if following is not None:  # none may run now (a backoff): the next slow call tries again
            self.dispatch(following, self.region, 0)
            self.forked = True


def _fork_failed(exc: Exception) -> None:
    """The database or broker away: the lane goes on alone; the sweeper covers the rest."""
    log.warning("lane fork not sent", extra={"error": str(exc)[:300]})


#: The process's one thread running the forks that come due: Celery's timer thread. While a fork
#: is set it wakes at least every half ``FORK_AFTER_SECONDS``, so a fork fires at most that late.
_FORKS = Timer(max_interval=FORK_AFTER_SECONDS / 2, on_error=_fork_failed)
