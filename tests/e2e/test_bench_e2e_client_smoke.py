"""The end-to-end and client benchmarks still run, with tiny numbers, and write what they promise.

Each starts the whole local stack in a subprocess, so these are functional tests of the
benchmarks themselves: the numbers are not judged against the goals, only that they are there
and plausible.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, output: Path, *options: str) -> tuple[dict[str, Any], str]:
    """Run ``bench/<script>`` with ``options``; its JSON report and printed output."""
    command = [sys.executable, str(ROOT / "bench" / script), *options, "--output", str(output)]
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=150, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    return json.loads(output.read_text(encoding="utf-8")), finished.stdout


def assert_positive(report: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = report[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)


@pytest.mark.timeout(180)
def test_quick_e2e_run_writes_every_required_number(tmp_path: Path) -> None:
    report, printed = run_bench(
        "e2e.py",
        tmp_path / "e2e.json",
        "--quick",
        "--subscribers", "5",
        "--identities", "2",
        "--rates", "10,100",
        "--duration", "1",
        "--max-drain", "8",
        "--quiet-wait", "0",
    )  # fmt: skip
    assert "writes/s" in printed
    assert_positive(
        report, "p50_ms_at_100", "p99_ms_at_100", "gateway_p50_ms", "max_sustained_writes_per_s"
    )
    assert report["p99_ms_at_100"] >= report["p50_ms_at_100"]
    assert report["cpu_probe_start_ms"] > 0 and report["cpu_probe_ms"] > 0
    assert report["parameters"]["subscribers"] == 5
    assert report["parameters"]["rates_per_s"] == [10, 100]
    levels = {level["offered_per_s"]: level for level in report["levels"]}
    assert set(levels) == {10, 100}
    for level in levels.values():
        assert level["written"] > 0 and level["write_errors"] == 0, level
        assert level["deliveries"] > 0 and level["call_p50_ms"] > 0, level
        assert level["malformed"] == 0
    assert report["gateway_only"]["deliveries"] == report["gateway_only"]["expected_deliveries"]
    for name in ("p50_at_100_writes_per_s", "p99_at_100_writes_per_s"):
        assert isinstance(report["goals"][name]["pass"], bool), name


@pytest.mark.timeout(180)
def test_quick_client_run_writes_every_required_number(tmp_path: Path) -> None:
    report, printed = run_bench(
        "client.py",
        tmp_path / "client.json",
        "--quick",
        "--changes", "300",
        "--messages", "50",
    )  # fmt: skip
    assert "changes/s" in printed
    assert_positive(report, "catchup_changes_per_s", "reconnect_to_caught_up_ms")
    assert report["catchup_changes"] == 300
    assert report["writes"]["logged_after_cursor"] == 300
    assert report["catchup"]["in_order_once"] is True
    overhead = report["overhead"]
    assert overhead["tidings_in_order_once"] is True
    assert overhead["overhead_vs_raw"]["count"] == 50
    assert isinstance(report["client_overhead_p50_ms"], float)
    assert isinstance(report["client_overhead_p99_ms"], float)
    for name in ("catchup_changes_per_s", "client_overhead_p50_ms"):
        assert isinstance(report["goals"][name]["pass"], bool), name
