"""Every status and classification, once. The database CHECK constraints (``beacon.models``)
and the OpenAPI enums (``app/openapi.py``) are generated from these; code compares against the
members (a ``StrEnum`` member equals its string, so stored rows and JSON need no conversion).
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class UnitStatus(StrEnum):
    """An execution row: one region × model × question of a job."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


class Classification(StrEnum):
    SUBSTANTIVE = "substantive"
    CONTENT_REFUSAL = "content_refusal"
    TECHNICAL_FAILURE = "technical_failure"


class UnitOutcome(StrEnum):
    """What one ``execute_unit`` delivery did (``beacon.execution.engine.step_unit``)."""

    COMPLETED = "completed"  # answered and recorded
    FAILED = "failed"  # a permanent provider error, recorded
    DEAD_LETTERED = "dead_lettered"  # claimed MAX_UNIT_ATTEMPTS times without an outcome: failed as poison
    RETRY = "retry"  # a transient error: handed back and re-dispatched after ``retry_in`` seconds
    DEADLINE = "deadline"  # the call was cut by the job's deadline: the job is finalised by deadline
    SKIPPED = "skipped"  # not ours to run (already done, leased elsewhere, job over)
    REROUTED = "rerouted"  # a unit of a region this worker does not serve: sent to its region's queue
    WAITING = "waiting"  # no free slot of its region in this worker: put back, not claimed (no attempt)


class PinState(StrEnum):
    PENDING = "pending"
    PINNED = "pinned"
    MISMATCH = "mismatch"


OPEN_JOB = (JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL_JOB = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
OPEN_UNIT = (UnitStatus.PENDING, UnitStatus.RUNNING)
