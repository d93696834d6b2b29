"""The start-up benchmark still runs, with one stack, and writes what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "start_s",
    "moto_process_s",
    "deploy_template_s",
    "identity_service_s",
    "stream_pumps_s",
    "stop_s",
    "cpu_s",
)


@pytest.mark.timeout(240)
def test_quick_startup_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "startup.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "startup.py"),
        "--quick",
        "--output",
        str(output),
    ]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=200, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["runs"] == 1 and len(report["all_runs"]) == 1
    for key in FIGURES:
        value = report[key]
        assert isinstance(value, float) and value > 0, (key, value)
    # the phases happen inside the start
    assert report["deploy_template_s"] + report["stream_pumps_s"] < report["start_s"]
    assert report["cpu_probe_ms"] > 0
