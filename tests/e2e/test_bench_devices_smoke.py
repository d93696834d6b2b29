"""The devices benchmark still runs, against its own server process, and writes what it promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = (
    "mtls_handshakes_per_s",
    "wss_sigv4_handshakes_per_s",
    "mtls_connections_held",
    "kib_per_mtls_connection",
    "credentials_provider_per_s",
    "credentials_provider_keep_alive_per_s",
)


@pytest.mark.timeout(180)
def test_quick_devices_run_writes_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "devices.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "devices.py"),
        "--quick",
        "--output",
        str(output),
    ]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    for key in FIGURES:
        value = report[key]
        assert isinstance(value, int | float) and value > 0, (key, value)
    assert report["mtls_connections_held"] == report["parameters"]["connections"]
    assert report["connection_test"]["failed"] == 0
    assert report["handshakes"]["mtls"]["failed"] == 0
    assert report["handshakes"]["wss_sigv4"]["failed"] == 0
    assert set(report["goals"]) == {"connections", "handshakes"}
    assert all(isinstance(entry["pass"], bool) for entry in report["goals"].values())
    assert report["cpu_probe_ms"] > 0
    assert "machine speed probe" in finished.stdout
