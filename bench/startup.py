"""How long the local stack takes to start and stop: the developer's wait at ``tidings up``
and at every test module that starts a stack.

Each run starts a :class:`~infra.local.stack.local_stack.LocalStack` from the project's
template in this process (as the tests do), times its phases (moto's process, the template
deployed into moto, the identity service, the functions and the API, the stream pumps) and
its stop, and measures the CPU the run used in this process and in its children (moto, the
Lambda workers). Figures are medians over ``--runs``.

Usage::

    .venv/bin/python bench/startup.py             # 3 runs, about 30 s
    .venv/bin/python bench/startup.py --quick     # 1 run

Writes ``bench/results/startup.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import cpu_probe_ms, show_report  # noqa: E402
from infra.local.stack import local_stack  # noqa: E402
from infra.local.stack.local_stack import LocalStack, StackConfig  # noqa: E402

PHASES = {
    "moto_process_s": (local_stack, "_start_moto_process"),
    "deploy_template_s": (LocalStack, "_deploy_to_moto"),
    "identity_service_s": (LocalStack, "_start_identity"),
    "functions_and_api_s": (LocalStack, "_start_api_and_functions"),
    "stream_pumps_s": (LocalStack, "_start_pumps"),
}


def _timed(record: dict[str, float], name: str, function: Callable[..., Any]) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            record[name] = record.get(name, 0.0) + time.perf_counter() - started

    return wrapper


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run() -> dict[str, float]:
    """Start and stop one stack; its phase, start, stop and CPU times in seconds."""
    record: dict[str, float] = {}
    originals = {name: getattr(owner, attr) for name, (owner, attr) in PHASES.items()}
    for name, (owner, attr) in PHASES.items():
        setattr(owner, attr, _timed(record, name, originals[name]))
    try:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as state:
            cpu = _cpu_s()
            config = StackConfig(
                state_dir=Path(state),
                gateway_port=0,
                identity_port=0,
                api_port=0,
                moto_port=0,
                web_port=0,
                mqtt_port=0,
                credentials_port=0,
                function_log=Path(state) / "functions.log",
            )
            stack = LocalStack(config)
            started = time.perf_counter()
            stack.start()
            record["start_s"] = time.perf_counter() - started
            stopped = time.perf_counter()
            stack.stop()
            record["stop_s"] = time.perf_counter() - stopped
            record["cpu_s"] = _cpu_s() - cpu  # children count once they have exited
    finally:
        for name, (owner, attr) in PHASES.items():
            setattr(owner, attr, originals[name])
    return record


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; prints a table and writes the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="stacks to start one after another")
    parser.add_argument("--quick", action="store_true", help="one run")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else max(1, args.runs)
    probe = cpu_probe_ms()
    records = [one_run() for _ in range(runs)]
    keys = ["start_s", *PHASES, "stop_s", "cpu_s"]
    medians = {key: round(statistics.median(r.get(key, 0.0) for r in records), 3) for key in keys}
    report = {"runs": runs, "cpu_probe_start_ms": probe, **medians, "all_runs": records}
    heading = f"figure (median of {runs})"
    rows = [f"{heading:<28} seconds"]
    rows += [f"{key:<28} {medians[key]:>7.2f}" for key in keys]
    show_report(report, args.output, "\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
