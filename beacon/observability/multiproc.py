"""The API's multiprocess metrics folder, prepared before prometheus_client is imported anywhere.

prometheus_client decides at import whether samples go to ``PROMETHEUS_MULTIPROC_DIR``; the
gunicorn master must set it before importing ``app`` (which imports prometheus_client), so every
forked worker writes its samples there and ``/metrics`` in any worker adds up all of them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def prepare_metrics_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR for the workers' metrics: the configured folder emptied, else a new one.

    Call it before anything in the process imports prometheus_client.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if configured:
        folder = Path(configured)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="beacon-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    return str(folder)
