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


def closed_websocket(error: BaseException | None) -> bool:
    """flask-sock ends every finished ``/ws`` by raising from its response: StopIteration under
    gunicorn (which closes the connection on it), ConnectionError under werkzeug. A normal close."""
    if not isinstance(error, (StopIteration, ConnectionError)):
        return False
    frame, last = error.__traceback__, None
    while frame is not None:
        last, frame = frame, frame.tb_next
    return last is not None and str(last.tb_frame.f_globals.get("__name__", "")).startswith("flask_sock")


def is_expected(error: BaseException | None) -> bool:
    return isinstance(error, EXPECTED) or closed_websocket(error)
