"""``beacon demo`` (the whole product on the embedded default) and ``beacon simulator``.

``beacon demo --model real`` runs the same demo with a real model in every region: it starts
``beacon model-server`` (llama.cpp on the packaged SmolLM2-135M-Instruct, or ``MODEL_FILE``), points
US, EU and APAC at it through the ``openai`` provider, each with its own system prompt
(``beacon.execution.providers.model_server.REGION_PROMPTS``), and submits the sample questions on
that one model.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from beacon.cli import main
from beacon.settings import get_settings

SAMPLE_JOB = Path(__file__).resolve().parent.parent / "data" / "sample-job.json"


@main.command()
@click.option("--port", type=int, default=8100, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--latency-ms", type=float, default=20.0, show_default=True)
@click.option("--error-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
@click.option("--hang-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True)
def simulator(port: int, host: str, latency_ms: float, error_rate: float, hang_rate: float) -> None:
    """Serve the offline model simulator over HTTP (/inference and /v1/chat/completions)."""
    from beacon.execution.providers import serve_simulator

    server = serve_simulator(host=host, port=port, latency_ms=latency_ms, error_rate=error_rate,
                             hang_rate=hang_rate)
    click.echo(f"simulator listening on {server.url}")
    signal.signal(signal.SIGTERM, lambda *_: server.close())
    try:
        server.thread.join()
    except KeyboardInterrupt:
        server.close()


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]


def _check_alive(processes: list[subprocess.Popen], logs: Path) -> None:
    for process in processes:
        if process.poll() is not None:
            role = process.args[3]
            raise click.ClickException(f"beacon {role} exited with {process.returncode}; see {logs / role}.log")


def _wait_http(url: str, processes: list[subprocess.Popen], logs: Path, timeout_s: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _check_alive(processes, logs)
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{url} did not answer within {timeout_s:.0f}s")


def _demo_key(data_dir: Path) -> tuple[Path, Path]:
    """The demo's submitter key (created once) and a trusted keys file naming it."""
    from beacon.crypto.signing import KeyPair

    key_path = data_dir / "demo-key"
    KeyPair.generate().save(key_path, replace=False)  # kept when it exists
    trusted = data_dir / "demo-trusted-keys.json"
    trusted.write_text(json.dumps([{"kid": "demo", "public_key": KeyPair.load(key_path).public_key_b64,
                                    "status": "active"}]))
    return key_path, trusted


#: The real-model demo: answers up to this many tokens; each call may take this long (the model
#: server answers one request at a time, so calls wait for the ones ahead of them).
REAL_MAX_TOKENS = 128
REAL_CALL_TIMEOUT_S = 120
REAL_MAX_IN_FLIGHT = 2


def _start_model_server(data_dir: Path, logs: Path, console) -> tuple[object, Path, str]:  # noqa: ANN001
    """Start ``beacon model-server`` on a free port; write a providers file sending every region to it.
    Returns (the server process, the providers file, the model's name)."""
    import requests

    from beacon.execution.providers.model_server import (
        INSTALL_HINT,
        ModelServerProcess,
        ModelUnavailable,
        providers_toml,
        resolve_model_file,
        server_installed,
    )

    if not server_installed():
        raise click.ClickException(f"--model real needs llama-cpp-python's server: {INSTALL_HINT}")
    try:
        model = resolve_model_file(get_settings().model_file)
    except ModelUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"starting the model server on {model.name} (log: {logs / 'model-server.log'})")
    try:
        server = ModelServerProcess(log_path=logs / "model-server.log").start()
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    model_name = requests.get(f"{server.url}/v1/models", timeout=30).json()["data"][0]["id"]
    providers = data_dir / "providers.real-model.toml"
    providers.write_text(providers_toml(
        server.url, max_tokens=REAL_MAX_TOKENS, timeout_s=REAL_CALL_TIMEOUT_S, max_in_flight=REAL_MAX_IN_FLIGHT,
        header=f"Written by `beacon demo --model real`: every region on the model server at {server.url}."))
    console.print(f"model server {server.url} serves [bold]{model_name}[/bold]; US, EU and APAC call it through the "
                  f"openai provider, each with its own system prompt ({providers})")
    return server, providers, model_name


def _real_model_spec(model_name: str) -> dict:
    """The sample job on the one real model, with room for answers that take seconds each."""
    spec = read_sample_job()
    spec["benchmark"]["description"] = "Three control, bias and culture questions on a real model in three regions"
    spec["benchmark"]["container"] = {"image": "beacon/model-server", "tag": "llama.cpp"}
    spec["models"] = [model_name]
    spec["constraints"].update(timeout=600 * 10**9, provider_timeout=REAL_CALL_TIMEOUT_S * 10**9)
    return spec


def read_sample_job() -> dict:
    return json.loads(SAMPLE_JOB.read_text())


def _usage_line(job: dict) -> str:
    usage = job.get("usage") or {}
    if not usage.get("units_reporting"):
        return "tokens: none reported (the simulator counts none)"
    truncated = sum(1 for e in job.get("executions", []) if e.get("truncated"))
    return (f"tokens: {usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion over "
            f"{usage['units_reporting']} answers; {truncated} cut at max_tokens")


@main.command()
@click.option("--port", type=int, default=None, help="API port (default: PORT, or a free one).")
@click.option("--keep-running", is_flag=True, help="Leave the API, worker and beat running after the job.")
@click.option("--model", "model_kind", type=click.Choice(["simulator", "real"]), default="simulator",
              show_default=True, help="real: start `beacon model-server` and answer with a real model in every "
                                      "region (needs the [llm] extra: bash scripts/install-llm).")
def demo(port: int | None, keep_running: bool, model_kind: str) -> None:
    """Run API, worker and beat on the current settings (embedded default: no services), submit a
    signed 3 regions × 2 models × 3 questions job, follow it and print the cross-region table.
    With --model real: 3 regions × 1 real model × 3 questions, answered by llama.cpp."""
    import requests
    from rich.console import Console

    from beacon import migrate
    from beacon.cli.follow import analysis_table, answers_table, follow_job
    from beacon.cli.keys import post_job, prepare_spec

    settings = get_settings()
    console = Console()
    data_dir = settings.data_dir
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    key_path, trusted = _demo_key(data_dir)
    migrate.upgrade(settings.database_url)
    port = port or _free_port(settings.port)
    env = {**os.environ, "BEACON_DATA_DIR": str(data_dir), "TRUSTED_KEYS_FILE": str(trusted),
           "PORT": str(port)}
    mode = "embedded default (SQLite + file broker)" if settings.embedded else "configured services"
    console.print(f"[bold]Beacon Runner demo[/bold] on the {mode}; data in {data_dir}, logs in {logs}")
    # The API's metrics listener on a port of its own: the worker serves its /metrics on METRICS_PORT.
    metrics_port = _free_port(settings.metrics_port + 1)
    roles = {"api": ["api", "--port", str(port), "--host", "127.0.0.1", "--workers", "1",
                     "--metrics-port", str(metrics_port)],
             "worker": ["worker"], "beat": ["beat"]}
    processes = []
    model_server = None
    job = {"status": "not submitted"}
    try:
        spec = read_sample_job()
        if model_kind == "real":
            model_server, providers, model_name = _start_model_server(data_dir, logs, console)
            env["PROVIDERS_FILE"] = str(providers)
            spec = _real_model_spec(model_name)
        for name, args in roles.items():
            with (logs / f"{name}.log").open("ab") as log:
                processes.append(subprocess.Popen([sys.executable, "-m", "beacon", *args], env=env,
                                                  stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health/live", processes, logs)
        spec = prepare_spec(spec, str(key_path))
        response = post_job(base, spec)
        if response.status_code != 202:
            raise click.ClickException(f"submission refused: {response.status_code} {response.text}")
        console.print(f"submitted {spec['id']} → {response.status_code} {response.json()}")
        def check() -> None:
            _check_alive(processes, logs)
            if model_server is not None and not model_server.running:
                raise click.ClickException(f"the model server exited; see {logs / 'model-server.log'}")

        job = follow_job(base, spec["id"], console, timeout_s=600, check=check)
        console.print(answers_table(job))
        diff = requests.get(f"{base}/api/v1/jobs/{job['id']}/diff", timeout=30)
        if diff.ok:
            console.print(analysis_table(diff.json()["analysis"]))
        console.print(_usage_line(job))
        console.print(f"job {job['id']}: [bold]{job['status']}[/bold] — {job['status_reason']}")
        if keep_running:
            console.print(f"API on {base}; Ctrl-C to stop")
            processes[0].wait()
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        if model_server is not None:
            model_server.stop()
    sys.exit(0 if job["status"] == "completed" else 1)
