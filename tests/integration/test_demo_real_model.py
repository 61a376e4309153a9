"""``beacon demo --model real``: the README's demo with a real model in every region (it starts its
own ``beacon model-server``), on the embedded default."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from tests.integration.test_demo import SERVICE_VARS

pytest.importorskip("llama_cpp.server.app", reason="the [llm] extra is not installed (bash scripts/install-llm)")
pytestmark = pytest.mark.real_model


def test_demo_with_the_real_model_answers_in_every_region(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS and k != "MODEL_FILE"}
    result = subprocess.run([sys.executable, "-m", "beacon", "demo", "--model", "real", "--port", "0"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "serves smollm2-135m-instruct" in out and "9/9 units succeeded" in out
    assert "cross-region analysis: overall risk" in out and "tokens: " in out
    with sqlite3.connect(tmp_path / "beacon-data" / "beacon.db") as conn:
        rows = conn.execute("SELECT region, provider, output, prompt_tokens, completion_tokens, finish_reason "
                            "FROM executions").fetchall()
    assert len(rows) == 9 and {r[0] for r in rows} == {"US", "EU", "APAC"}
    for region, provider, output, prompt_tokens, completion_tokens, finish_reason in rows:
        assert provider == "openai" and output.strip() and prompt_tokens > 0 and completion_tokens > 0, region
        assert finish_reason in ("stop", "length")
    assert "model-server: stopped" in (tmp_path / "beacon-data" / "logs" / "model-server.log").read_text()
