"""The image's health check, for whichever role the container runs: ``python -m beacon.healthcheck``.

It finds the ``beacon <role>`` process of the container (in /proc; ``--role`` names it instead)
and asks that role's own signal, on loopback:

| role | healthy when |
|---|---|
| api | ``GET /health/live`` answers 200 on ``--port`` or ``PORT`` (answered before the app: liveness) |
| worker | ``GET /metrics`` answers on ``METRICS_PORT`` (served by the worker process); with ``METRICS_PORT=0``, the process runs |
| flower | ``GET /healthcheck`` answers on ``--port`` or ``FLOWER_PORT`` |
| simulator | ``GET /health`` answers on ``--port`` (8100) |
| beat, migrate | the process runs (beat has no port; migrate is a one-shot) |

Standard library only, so a check costs a few milliseconds of start-up, not the whole CLI's.
Exit 0 when healthy, 1 otherwise (one line on stderr says why).
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROLES = ("api", "worker", "beat", "flower", "simulator", "migrate")
DEFAULT_PORTS = {"api": 8090, "flower": 5555, "simulator": 8100}
METRICS_PORT = 9091


def beacon_processes(proc: Path = Path("/proc")) -> list[list[str]]:
    """The argv of every ``beacon <role> …`` process here (``beacon`` script or ``python -m beacon``)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
        except OSError:
            continue
        for index, word in enumerate(argv[:-1]):
            if (word == "beacon" or word.endswith("/beacon")) or (word == "-m" and argv[index + 1] == "beacon"):
                start = index + (2 if word == "-m" else 1)
                if start < len(argv) and argv[start] in ROLES:
                    found.append(argv[start:])
                break
    return found


def option(argv: list[str], name: str) -> str | None:
    for index, word in enumerate(argv):
        if word == name and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def probe_url(role: str, argv: list[str], env: dict[str, str]) -> str | None:
    """The URL whose answer says ``role`` is healthy, or None when running is all there is to check."""
    if role == "api":
        port = option(argv, "--port") or env.get("PORT") or DEFAULT_PORTS["api"]
        return f"http://127.0.0.1:{port}/health/live"
    if role == "worker":
        port = int(env.get("METRICS_PORT") or METRICS_PORT)
        return f"http://127.0.0.1:{port}/metrics" if port else None
    if role == "flower":
        port = option(argv, "--port") or env.get("FLOWER_PORT") or DEFAULT_PORTS["flower"]
        address = option(argv, "--address") or env.get("FLOWER_ADDRESS") or "127.0.0.1"
        host = "127.0.0.1" if address in ("0.0.0.0", "", "127.0.0.1") else ("::1" if address == "::" else address)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/healthcheck"
    if role == "simulator":
        return f"http://127.0.0.1:{option(argv, '--port') or DEFAULT_PORTS['simulator']}/health"
    return None


def check(role: str | None, argv: list[str] | None = None, env: dict[str, str] | None = None) -> str | None:
    """None when healthy, else the reason."""
    env = dict(os.environ if env is None else env)
    if argv is None:
        running = [found for found in beacon_processes() if role is None or found[0] == role]
        if not running:
            return f"no beacon {role or 'role'} process is running"
        argv = running[0]
    role = role or argv[0]
    url = probe_url(role, argv, env)
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=4) as answer:  # noqa: S310  (loopback, our own URL)
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m beacon.healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=ROLES, default=None, help="the role to check (default: the one running)")
    args = parser.parse_args()
    argv = [args.role] if args.role else None
    reason = check(args.role, argv)
    if reason:
        print(f"unhealthy: {reason}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
