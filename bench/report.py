"""What every benchmark does with its figures: goal entries and the JSON results file.

Every results file also carries ``cpu_probe_ms``: the time this process takes for a fixed
piece of pure-Python work when the report is written. The machines these figures come
from are shared, and their speed drifts: in one session the probe ranged from 127 to
242 ms. Compare figures from different runs together with their probes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def cpu_probe_ms() -> float:
    """Milliseconds for a fixed pure-Python loop (best of three): how fast the machine is now."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        sum(i * i for i in range(3_000_000))
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def goal(target: str, value: Any, passed: bool | None) -> dict[str, Any]:
    """One goal entry of a report."""
    return {"target": target, "value": value, "pass": passed}


def write_report(report: dict[str, Any], output: Path) -> None:
    """Write ``report`` as indented JSON to ``output`` (its folder is created)."""
    report.setdefault("cpu_probe_ms", cpu_probe_ms())
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def show_report(report: dict[str, Any], output: Path, table: str) -> None:
    """Write the results file, then print the table and where the file is."""
    write_report(report, output)
    print()
    print(table)
    probes = [report.get("cpu_probe_start_ms"), report["cpu_probe_ms"]]
    shown = " then ".join(f"{p:g} ms" for p in probes if p is not None)
    print(f"machine speed probe: {shown} (a fixed Python loop; lower is faster)")
    print(f"results: {output}")
