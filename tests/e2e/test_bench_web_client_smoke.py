"""The web client's benchmark still runs, small, and writes every figure it promises: bundle
sizes against Amplify, catch-up in Chromium and in the Python client, the per-change cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "bundle_gz_bytes",
    "amplify_pubsub_gz_bytes",
    "ratio_vs_amplify",
    "catchup_changes_per_s",
    "python_client_catchup_changes_per_s",
    "overhead_p50_ms",
)


@pytest.mark.timeout(600)
def test_small_web_client_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "web_client.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "web_client.py"),
        "--changes",
        "300",
        "--runs",
        "1",
        "--live",
        "20",
        "--output",
        str(output),
    ]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=560, check=False
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    for key in FIGURES:
        assert isinstance(report[key], int | float) and report[key] > 0, (key, report[key])
    assert report["bundle_gz_bytes"] < report["amplify_pubsub_gz_bytes"]
    assert "catchup_changes_per_s" in finished.stdout or "catch-up" in finished.stdout
