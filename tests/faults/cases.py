"""The fault cases the suite defines, in the order ``docs/RELIABILITY.md`` lists them.

``tests/faults/test_faults.py`` has one test per case (a test checks the two agree), and
``bench/reliability_report.py`` lists every case here, run or not.
"""

from __future__ import annotations

#: case name -> what is done to the running system.
CASES: dict[str, str] = {
    "worker_sigkill": "a worker is SIGKILLed while units are in flight; a new worker starts at once",
    "worker_warm_shutdown": "a worker gets SIGTERM while a provider call hangs; it must stop within its grace period",
    "redis_restart_empty": "the broker (Redis) is killed mid-run and restarted empty; jobs are submitted while it is down",
    "database_outage": "PostgreSQL is stopped mid-run while answers are in flight, then started again; no sweeper runs",
    "provider_slow_drip": "the provider trickles its answer a byte a second (no read ever times out; the whole answer would outlast the job deadline)",
    "provider_huge_answer": "the provider answers 50 MiB (chunked, no Content-Length)",
    "provider_outage_20s": "the provider answers 503 to every call for 20 s, well within the job deadline",
}

#: The invariants every case checks, in report order.
INVARIANTS: dict[str, str] = {
    "terminal_within_bound": "every accepted job reached a terminal status within the case's bound",
    "one_execution_row_per_unit": "each job has exactly one execution row per unit, none left open",
    "one_bundle_and_log_entry_per_finalised_job": "each completed or failed job has exactly one bundle and one transparency entry",
    "outbox_drained": "every outbox row was published",
    "log_gapless": "leaf indices 0..n-1, leaf hashes and the signed root recomputed independently (RFC 6962, hashlib)",
}
