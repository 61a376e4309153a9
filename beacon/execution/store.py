"""What the claims, the recording and the finalisation share: the tables, the pieces of their
statements (the held unit, a change written with its event in one statement), a unit's event
data and the stored JobSpec."""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import DateTime, Text, and_, bindparam, cast, func, insert, literal, or_, select, true, update

from beacon.ingest.jobspec import JobSpec, parse_jobspec
from beacon.ingest.questions import load_catalogue
from beacon.models import Event, Execution, Job
from beacon.settings import Settings
from beacon.statuses import OPEN_UNIT, UnitStatus

# dispatch(execution_id, region, countdown_seconds) publishes one execute_unit message.
DispatchUnit = Callable[[int, str, float], None]


def stored_spec(spec: dict, settings: Settings) -> JobSpec:
    """The parsed JobSpec of a stored job's ``spec`` (validated at ingest; parsed again for its defaults)."""
    return parse_jobspec(spec, default_model=settings.default_model, catalogue=load_catalogue(settings.questions_file),
                         max_units=10**9)


# The statements of the hot path are built once on the tables (Core: no ORM flush or bulk-update
# path); each call only binds values.
JOBS, UNITS = Job.__table__, Execution.__table__
OPEN = or_(*(UNITS.c.status == status for status in OPEN_UNIT))  # not IN (…): see Database.run
EVENTS = Event.__table__
NOW = bindparam("now", type_=DateTime(timezone=True))
HELD = and_(UNITS.c.id == bindparam("execution_id"), UNITS.c.status == UnitStatus.RUNNING,
            UNITS.c.claimed_at == bindparam("held_since"))


def with_event(change, job_id, event_type, data, when=None):  # noqa: ANN001, ANN202
    """The event of ``change`` (a data-modifying CTE of at most one row, the unit's) in the same
    statement: the job's ``event_seq`` bumped, then the event row with that seq, as ``emit`` does in
    a transaction (the job row's lock orders the job's events by commit). Nothing when ``change``
    changed no row, or ``when`` (over ``change``'s columns) does not hold. Returns (seq, event) CTEs."""
    changed = select(job_id).select_from(change)
    if when is not None:
        changed = changed.where(when)
    seq = (update(JOBS).where(JOBS.c.id == changed.scalar_subquery())
           .values(event_seq=JOBS.c.event_seq + 1).returning(JOBS.c.id, JOBS.c.event_seq).cte("seq"))
    event = (insert(EVENTS).from_select(
        ["job_id", "seq", "type", "time", "data"],
        select(seq.c.id, seq.c.event_seq, cast(event_type, Text), bindparam("event_time", type_=NOW.type),
               data).select_from(seq.join(change, true())),
    ).returning(EVENTS.c.id).cte("event"))
    return seq, event


def json_object(**values):  # noqa: ANN003, ANN202
    return func.jsonb_build_object(*(part for key, value in values.items() for part in (cast(literal(key), Text), value)))


def unit_event(execution_id: int, unit: Any, **extra: Any) -> dict:
    """An event's ``data`` for one unit (``unit``: a claim or a row with region, model_id, question_id)."""
    return {"execution_id": execution_id, "region": unit.region, "model_id": unit.model_id,
            "question_id": unit.question_id, "attempts": getattr(unit, "attempts", None), **extra}
