"""What one job costs, piece by piece, single-threaded and in-process: CPU per 18-unit job for its
start (without publishing: the lanes' messages are only collected), its units (one lane per
region: claim, zero-latency simulator call, record, with their events' publishes, the next unit
looked up) and its finalisation. No Celery, no other thread: the figures a change to one piece
moves, free of the worker's contention (see ``bench.pipeline`` for the whole pipeline against raw
Celery).

Needs Postgres and Redis on loopback (a scratch database is created and dropped).
Run: .venv/bin/python -m bench.job_costs [--jobs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from beacon.crypto.signing import KeyPair
from bench.common import beacon_env, body, make_spec, scratch_database, trusted_key_file
from bench.pipeline import MODELS, QUESTIONS, WIDTH

WARM_UP = 2  # jobs run first and not counted (connections, caches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    options = parser.parse_args()
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-"))
    trusted = trusted_key_file(work, key)
    with scratch_database("beacon_bench") as database_url:
        env = beacon_env(database_url, work, trusted, SIMULATOR_LATENCY_MS="0")
        os.environ.update(env)
        from app.services import Services
        from beacon.execution import engine, lanes, regions
        from beacon.settings import Settings

        settings = Settings.from_env(env)
        services = Services.build(settings)
        db, registry = services.db, regions.provider_registry(settings)

        def step(execution_id, around_call, _resume):  # noqa: ANN001, ANN202
            return engine.run_unit(db, settings, registry, execution_id, worker="bench", around_call=around_call)

        totals = {"start": 0.0, "units": 0.0, "finalisation": 0.0}
        for index in range(WARM_UP + options.jobs):
            raw = body(make_spec(key, questions=QUESTIONS, models=MODELS))
            job_id = json.loads(raw)["id"]
            assert services.ingestor.submit(raw, "127.0.0.1", None).created
            units: list[tuple[int, str]] = []
            spent = {}
            began = time.process_time()
            engine.start_job(db, settings, job_id, lambda _job, heads: units.extend(heads))
            spent["start"] = time.process_time() - began
            began = time.process_time()
            for execution_id, region in units:  # one lane per region, as a worker runs them
                assert lanes.run_lane(db, job_id, region, execution_id, step, lambda *_: None).status == "completed"
            spent["units"] = time.process_time() - began
            began = time.process_time()
            assert engine.finalize_job(db, settings, job_id) in ("completed", "failed")
            spent["finalisation"] = time.process_time() - began
            if index >= WARM_UP:
                for piece, seconds in spent.items():
                    totals[piece] += seconds
    per_job = {piece: seconds * 1000 / options.jobs for piece, seconds in totals.items()}
    print(f"CPU per job of {WIDTH} units over {options.jobs} jobs: start {per_job['start']:.2f} ms, "
          f"units {per_job['units']:.2f} ms ({per_job['units'] / WIDTH:.2f} ms a unit), "
          f"finalisation {per_job['finalisation']:.2f} ms; total {sum(per_job.values()) / WIDTH:.2f} ms a unit")


if __name__ == "__main__":
    main()
