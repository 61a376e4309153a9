"""Expected interruptions: typed exceptions that are part of normal operation, never Sentry issues.

Whoever detects one of these situations raises or captures the matching type; ``before_send``
(:mod:`beacon.observability.sentry`) drops every event whose exception is one of
:data:`EXPECTED`, so Sentry only counts them as filtered.
"""

from __future__ import annotations

# A client that went away mid-request: werkzeug raises its ClientDisconnected when the request
# body ends short. It is the API's typed exception for that case.
from werkzeug.exceptions import ClientDisconnected


class ExpectedInterruption(Exception):
    """Work stopped for a reason that is not a fault."""


class JobCancelled(ExpectedInterruption):
    """The job was cancelled by its owner or an operator while one of its units was in flight."""

    def __init__(self, job_id: str, execution_id: int):
        super().__init__(f"job {job_id} was cancelled; unit {execution_id} was not recorded")
        self.job_id = job_id
        self.execution_id = execution_id


class DeadlineExceeded(ExpectedInterruption):
    """A unit's provider call was cut by the job's deadline; finalisation times the unit out."""

    def __init__(self, job_id: str, execution_id: int):
        super().__init__(f"unit {execution_id} of job {job_id} was cut by the job deadline")
        self.job_id = job_id
        self.execution_id = execution_id


EXPECTED: tuple[type[BaseException], ...] = (ExpectedInterruption, ClientDisconnected)


def is_expected(error: BaseException | None) -> bool:
    return isinstance(error, EXPECTED)
