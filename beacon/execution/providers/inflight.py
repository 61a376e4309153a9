"""The provider calls a worker process has in flight, one :class:`Abort` per job.

The engine takes its job's Abort around each provider call (:meth:`CallAborts.job`); the worker
triggers them:

* :meth:`CallAborts.end_job` when the job ended elsewhere (cancelled, emergency-stopped, or
  finalised by its deadline) — the calls of that job are useless now (reason ``job_ended``);
* :meth:`CallAborts.shutdown` when the worker stops (reason ``shutdown``): every call in flight
  is cut off, and every later one fails before connecting, so a warm shutdown ends promptly.

One process-wide instance, :data:`CALLS`, serves the worker (thread pool: every task thread
shares it).

:class:`RegionSlots` is the worker's per-region budget of calls in flight: the providers file's
``max_in_flight``, or by default a fair share of the worker's concurrency (its threads divided
among the regions it serves, rounded up). The engine takes a slot *before* claiming a unit and
never waits for one: a unit whose region has no free slot goes back to its queue with a short
countdown (:func:`beacon.execution.engine.put_back`), so a slow region holds at most its share
of the threads and the other regions' units keep running. :data:`SLOTS` serves the worker.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Mapping

from .bounded_call import Abort

__all__ = ["CALLS", "JOB_ENDED", "SHUTDOWN", "SLOTS", "CallAborts", "RegionSlots"]

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


#: Bounds of the countdown of a unit put back for want of a slot (see RegionSlots.retry_after).
PUT_BACK_MIN_SECONDS = 0.05
PUT_BACK_MAX_SECONDS = 1.0

#: A put-back unit no other delivery took up within this long is no longer counted as waiting here
#: (its message went to another worker, or its job ended).
WAITING_EXPIRY_SECONDS = 60.0


class RegionSlots:
    """The worker's non-blocking per-region budget of provider calls in flight.

    Unconfigured (outside a worker), every region is unlimited. :meth:`configure` sets each
    region's limit: its ``max_in_flight`` when the providers file gives one, else
    ``ceil(concurrency / regions served)``. ``on_change(region, in_use, waiting)`` (metrics)
    runs after every change, outside the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limits: dict[str, int] = {}
        self._used: dict[str, int] = {}
        self._waiting: dict[int, tuple[str, float]] = {}  # execution id -> (region, put back at)
        self._held_s: dict[str, float] = {}  # region -> moving average of how long a slot is held
        self.on_change: Callable[[str, int, int], None] | None = None

    @staticmethod
    def fair_share(concurrency: int, regions: int) -> int:
        return max(1, math.ceil(concurrency / max(1, regions)))

    def configure(self, limits: Mapping[str, int | None], concurrency: int) -> dict[str, int]:
        """``limits``: region -> ``max_in_flight`` (None: the fair share) for the regions served."""
        share = self.fair_share(concurrency, len(limits))
        with self._lock:
            self._limits = {region: limit or share for region, limit in limits.items()}
            return dict(self._limits)

    def serves(self, region: str) -> bool:
        """Whether this worker serves ``region`` (every region while unconfigured)."""
        with self._lock:
            return not self._limits or region in self._limits

    def limit(self, region: str) -> int | None:
        with self._lock:
            return self._limits.get(region)

    def try_take(self, region: str, execution_id: int | None = None) -> bool:
        """Take a slot of ``region`` when one is free; never waits."""
        with self._lock:
            limit = self._limits.get(region)
            used = self._used.get(region, 0)
            if limit is not None and used >= limit:
                return False
            self._used[region] = used + 1
            if execution_id is not None:
                self._waiting.pop(execution_id, None)
        self._changed(region)
        return True

    def give_back(self, region: str, held_seconds: float | None = None) -> None:
        """Free a slot of ``region``; ``held_seconds``, how long it was held, feeds :meth:`retry_after`."""
        with self._lock:
            self._used[region] = max(0, self._used.get(region, 0) - 1)
            if held_seconds is not None:
                before = self._held_s.get(region)
                self._held_s[region] = held_seconds if before is None else 0.8 * before + 0.2 * held_seconds
        self._changed(region)

    def retry_after(self, region: str) -> float:
        """How long a unit put back for want of a slot of ``region`` waits before it is tried again:
        half the time a slot of the region is usually held (so a fast region's unit is not kept
        waiting long, and a slow region's units are not re-tried many times a second), within
        PUT_BACK_MIN_SECONDS..PUT_BACK_MAX_SECONDS."""
        with self._lock:
            held = self._held_s.get(region, PUT_BACK_MAX_SECONDS)
        return min(PUT_BACK_MAX_SECONDS, max(PUT_BACK_MIN_SECONDS, held / 2))

    def waited(self, region: str, execution_id: int) -> None:
        """``execution_id`` was put back for want of a slot: count it as waiting until taken up."""
        with self._lock:
            self._waiting[execution_id] = (region, time.monotonic())
        self._changed(region)

    def in_use(self, region: str) -> int:
        with self._lock:
            return self._used.get(region, 0)

    def waiting(self, region: str) -> int:
        cutoff = time.monotonic() - WAITING_EXPIRY_SECONDS
        with self._lock:
            for ident in [i for i, (_, at) in self._waiting.items() if at < cutoff]:
                del self._waiting[ident]
            return sum(1 for r, _ in self._waiting.values() if r == region)

    def _changed(self, region: str) -> None:
        if self.on_change is not None:
            self.on_change(region, self.in_use(region), self.waiting(region))


#: The worker process's region slots.
SLOTS = RegionSlots()
