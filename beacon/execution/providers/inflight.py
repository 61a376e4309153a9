"""The provider calls a worker process has in flight, one :class:`Abort` per job.

The engine takes its job's Abort around each provider call (:meth:`CallAborts.job`); the worker
triggers them:

* :meth:`CallAborts.end_job` when the job ended elsewhere (cancelled, emergency-stopped, or
  finalised by its deadline) — the calls of that job are useless now (reason ``job_ended``);
* :meth:`CallAborts.shutdown` when the worker stops (reason ``shutdown``): every call in flight
  is cut off, and every later one fails before connecting, so a warm shutdown ends promptly.

One process-wide instance, :data:`CALLS`, serves the worker (thread pool: every task thread
shares it).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from .bounded_call import Abort

__all__ = ["CALLS", "JOB_ENDED", "SHUTDOWN", "CallAborts"]

SHUTDOWN = "shutdown"
JOB_ENDED = "job_ended"


class CallAborts:
    """Per-job Aborts of the calls in flight, created on first use and dropped with the last call."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[Abort, int]] = {}
        self._shutdown: str | None = None

    @contextmanager
    def job(self, job_id: str) -> Iterator[Abort]:
        """The job's Abort for the duration of one call (already triggered after a shutdown)."""
        with self._lock:
            if self._shutdown is not None:
                abort = Abort()
                abort.trigger(self._shutdown)
                held = False
            else:
                abort, count = self._jobs.get(job_id, (None, 0))
                if abort is None:
                    abort = Abort()
                self._jobs[job_id] = (abort, count + 1)
                held = True
        try:
            yield abort
        finally:
            if held:
                with self._lock:
                    current, count = self._jobs.get(job_id, (None, 0))
                    if current is abort:
                        if count <= 1:
                            del self._jobs[job_id]
                        else:
                            self._jobs[job_id] = (abort, count - 1)

    def job_ids(self) -> list[str]:
        """Jobs with a call in flight in this process now."""
        with self._lock:
            return list(self._jobs)

    def in_flight(self) -> int:
        with self._lock:
            return sum(count for _, count in self._jobs.values())

    def end_job(self, job_id: str, reason: str = JOB_ENDED) -> bool:
        """Abort the job's calls in flight; True when there were some. Later calls get a fresh Abort."""
        with self._lock:
            abort, _ = self._jobs.pop(job_id, (None, 0))
        return abort is not None and abort.trigger(reason)

    def shutdown(self, reason: str = SHUTDOWN) -> int:
        """Abort every call in flight and every later one; returns how many jobs had calls in flight."""
        with self._lock:
            if self._shutdown is None:
                self._shutdown = reason
            aborts = [abort for abort, _ in self._jobs.values()]
            self._jobs.clear()
        for abort in aborts:
            abort.trigger(reason)
        return len(aborts)

    @property
    def shutting_down(self) -> bool:
        return self._shutdown is not None


#: The worker process's calls.
CALLS = CallAborts()
