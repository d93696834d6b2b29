"""What every benchmark does with its figures: goal entries and the JSON results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def goal(target: str, value: Any, passed: bool | None) -> dict[str, Any]:
    """One goal entry of a report."""
    return {"target": target, "value": value, "pass": passed}


def write_report(report: dict[str, Any], output: Path) -> None:
    """Write ``report`` as indented JSON to ``output`` (its folder is created)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def show_report(report: dict[str, Any], output: Path, table: str) -> None:
    """Write the results file, then print the table and where the file is."""
    write_report(report, output)
    print()
    print(table)
    print(f"results: {output}")
