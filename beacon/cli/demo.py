"""``beacon demo`` (the whole product on the embedded default) and ``beacon simulator``."""

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


@main.command()
@click.option("--port", type=int, default=None, help="API port (default: PORT, or a free one).")
@click.option("--keep-running", is_flag=True, help="Leave the API, worker and beat running after the job.")
def demo(port: int | None, keep_running: bool) -> None:
    """Run API, worker and beat on the current settings (embedded default: no services), submit a
    signed 3 regions × 2 models × 3 questions job, follow it and print the cross-region table."""
    import requests
    from rich.console import Console

    from beacon import migrate
    from beacon.cli.follow import analysis_table, answers_table, follow_job
    from beacon.cli.keys import post_job, prepare_spec, read_json_file

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
    roles = {"api": ["api", "--port", str(port), "--host", "127.0.0.1", "--workers", "1"],
             "worker": ["worker"], "beat": ["beat"]}
    processes = []
    try:
        for name, args in roles.items():
            with (logs / f"{name}.log").open("ab") as log:
                processes.append(subprocess.Popen([sys.executable, "-m", "beacon", *args], env=env,
                                                  stdout=log, stderr=subprocess.STDOUT))
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health/live", processes, logs)
        spec = prepare_spec(read_json_file(str(SAMPLE_JOB)), str(key_path))
        response = post_job(base, spec)
        if response.status_code != 202:
            raise click.ClickException(f"submission refused: {response.status_code} {response.text}")
        console.print(f"submitted {spec['id']} → {response.status_code} {response.json()}")
        job = follow_job(base, spec["id"], console, timeout_s=300, check=lambda: _check_alive(processes, logs))
        console.print(answers_table(job))
        diff = requests.get(f"{base}/api/v1/jobs/{job['id']}/diff", timeout=30)
        if diff.ok:
            console.print(analysis_table(diff.json()["analysis"]))
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
    sys.exit(0 if job["status"] == "completed" else 1)
