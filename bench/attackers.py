"""Hostile clients for the exhaustion test and bench: slow-loris connections and idle WebSockets.

Run as its own process (gevent: one greenlet per connection), spread over several loopback
source addresses, against a server on this machine only:

    python -m bench.attackers --target 127.0.0.1:8090 --slow 200 --ws 500 \\
        --sources 127.0.0.2-127.0.0.40 --slow-interval 5 --duration 60

* a **slow-loris** connection sends a request head one header line at a time, ``--slow-interval``
  seconds apart, never finishing it; when the server closes it, it counts a cut and reconnects,
  so the attack stays at ``--slow`` connections;
* an **idle WebSocket** completes the handshake on ``/ws`` and then says nothing (it answers the
  server's pings, as an idle browser tab does); when closed it reconnects.

Every ``--report-every`` seconds (and at the end) one JSON line on stdout says how many of each
are open now and how many were cut, refused (429) or failed. It stops after ``--duration`` seconds,
on SIGTERM, or (with ``--stop-on-stdin-eof``) when its standard input closes.
"""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402
from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import AcceptConnection, CloseConnection, Ping, RejectConnection, Request  # noqa: E402

counts: Counter[str] = Counter()
stopping = Event()


def address_range(spec: str) -> list[str]:
    """``127.0.0.2-127.0.0.40`` or a comma list."""
    if "-" in spec:
        first, last = (ipaddress.ip_address(part.strip()) for part in spec.split("-", 1))
        return [str(ipaddress.ip_address(n)) for n in range(int(first), int(last) + 1)]
    return [part.strip() for part in spec.split(",") if part.strip()]


def connect(target: tuple[str, int], source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(target)
    return sock


def slow_loris(target: tuple[str, int], source: str, interval: float) -> None:
    while not stopping.is_set():
        try:
            sock = connect(target, source)
        except OSError:
            counts["slow_failed"] += 1
            stopping.wait(0.5)
            continue
        counts["slow_open"] += 1
        try:
            sock.sendall(f"GET /health/ready HTTP/1.1\r\nHost: {target[0]}\r\n".encode())
            line = 0
            while not stopping.is_set():
                sock.settimeout(interval)
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    line += 1
                    sock.sendall(f"X-Slow-{line}: a\r\n".encode())
                    continue
                counts["slow_refused" if data.startswith(b"HTTP/1.1 429") else "slow_cut"] += 1
                break
        except OSError:
            counts["slow_cut"] += 1
        finally:
            counts["slow_open"] -= 1
            sock.close()


def idle_websocket(target: tuple[str, int], source: str) -> None:
    while not stopping.is_set():
        try:
            sock = connect(target, source)
        except OSError:
            counts["ws_failed"] += 1
            stopping.wait(0.5)
            continue
        conn = WSConnection(ConnectionType.CLIENT)
        held = False
        try:
            sock.sendall(conn.send(Request(host=f"{target[0]}:{target[1]}", target="/ws")))
            sock.settimeout(None)
            while not stopping.is_set():
                data = sock.recv(65536)
                if not data:
                    break
                conn.receive_data(data)
                for event in conn.events():
                    if isinstance(event, AcceptConnection):
                        held = True
                        counts["ws_open"] += 1
                    elif isinstance(event, RejectConnection):
                        counts["ws_refused" if event.status_code == 429 else "ws_rejected"] += 1
                        raise ConnectionAbortedError
                    elif isinstance(event, Ping):
                        sock.sendall(conn.send(event.response()))
                    elif isinstance(event, CloseConnection):
                        raise ConnectionAbortedError
        except ConnectionAbortedError:
            pass
        except OSError:
            counts["ws_errors"] += 1
        except Exception:  # a protocol error from the server's side: count it, go on
            counts["ws_errors"] += 1
        finally:
            if held:
                counts["ws_open"] -= 1
                counts["ws_closed"] += 1
            sock.close()
        if not held:
            stopping.wait(0.2)  # refused: try again a little later, as a patient attacker would


def report() -> None:
    keys = ("slow_open", "slow_cut", "slow_refused", "slow_failed", "ws_open", "ws_closed", "ws_refused",
            "ws_rejected", "ws_errors", "ws_failed")
    print(json.dumps({"time": round(time.time(), 3), **{key: counts[key] for key in keys}}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="host:port of the API (loopback only)")
    parser.add_argument("--slow", type=int, default=0)
    parser.add_argument("--ws", type=int, default=0)
    parser.add_argument("--sources", default="127.0.0.2-127.0.0.40")
    parser.add_argument("--slow-interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--report-every", type=float, default=0.5)
    parser.add_argument("--stop-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        parser.error("the target must be a loopback address")
    target = (host, int(port))
    sources = address_range(args.sources)
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    if args.stop_on_stdin_eof:  # the parent closing our stdin (or dying) stops us
        from gevent.fileobject import FileObjectPosix

        gevent.spawn(lambda: (FileObjectPosix(sys.stdin.fileno(), "rb", close=False).read(), stopping.set()))
    attackers = [gevent.spawn(slow_loris, target, sources[i % len(sources)], args.slow_interval)
                 for i in range(args.slow)]
    attackers += [gevent.spawn(idle_websocket, target, sources[(i + args.slow) % len(sources)])
                  for i in range(args.ws)]
    deadline = time.monotonic() + args.duration
    while not stopping.wait(args.report_every) and time.monotonic() < deadline:
        report()
    stopping.set()
    gevent.killall(attackers, timeout=5)
    report()


if __name__ == "__main__":
    main()
