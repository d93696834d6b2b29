"""The fan-out benchmark still runs end to end, with tiny numbers, and writes what it promises.

It starts real brokers (the Tidings gateway, amqtt) as subprocesses, so it is a functional
test of the benchmark itself: the numbers are not judged, only that they are there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

POSITIVE_NUMBERS = (
    "tidings_deliveries_per_s",
    "amqtt_deliveries_per_s",
    "ratio_vs_amqtt",
    "p50_ms",
    "p99_ms",
    "amqtt_p50_ms",
    "amqtt_p99_ms",
    "connections_held",
    "kib_per_connection",
)


@pytest.mark.timeout(300)
def test_quick_fanout_run_writes_every_required_number(tmp_path: Path) -> None:
    output = tmp_path / "fanout.json"
    command = [
        sys.executable,
        str(ROOT / "bench" / "fanout.py"),
        "--quick",
        "--subscribers", "5",
        "--connections", "50",
        "--duration", "1",
        "--output", str(output),
    ]  # fmt: skip
    finished = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert "deliveries/s" in finished.stdout

    report = json.loads(output.read_text(encoding="utf-8"))
    for key in POSITIVE_NUMBERS:
        value = report[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)
    assert report["connection_test"]["attempted"] == 50
    assert "mosquitto_deliveries_per_s" in report
    if shutil.which("mosquitto") is None:
        assert report["mosquitto_deliveries_per_s"] is None
        assert "mosquitto: not installed" in finished.stdout

    parameters = report["parameters"]
    assert parameters["subscribers"] == 5
    assert parameters["payload_bytes"] == 200
    assert parameters["qos"] == [0, 1]
    assert parameters["duration_s"] == 1
    for name in ("fanout_vs_amqtt", "p99_at_fixed_load", "connections"):
        assert isinstance(report["goals"][name]["pass"], bool), name
    for broker in ("tidings", "amqtt"):
        for qos in ("qos0", "qos1"):
            run = report["runs"][broker][qos]
            assert run["max_rate"]["deliveries"] == run["max_rate"]["expected_deliveries"] or (
                qos == "qos0"
            ), (broker, qos)
            assert run["lost"] == 0 or qos == "qos0", (broker, qos)
