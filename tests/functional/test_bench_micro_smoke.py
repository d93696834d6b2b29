"""The micro-benchmark runs and writes every figure it promises (the numbers are not judged)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_micro_run_writes_its_figures(tmp_path: Path) -> None:
    output = tmp_path / "micro.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "micro.py"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    for name in (
        "codec_byte_at_a_time_6k_ms",
        "codec_byte_at_a_time_60k_ms",
        "codec_growth_for_10x_bytes",
        "policy_decision_us",
        "cpu_probe_ms",
    ):
        assert report[name] > 0, name
    assert len(report["goals"]) == 2
    assert "policy decision" in result.stdout
