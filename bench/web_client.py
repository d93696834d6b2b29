"""Web client benchmark: what ``@tidings/client`` costs a page, next to AWS Amplify v6.

1. **Bundle size.** esbuild (``bench/web/node_modules``, the exact versions of
   ``bench/web/package-lock.json``, installed with ``npm ci`` when missing or older than the
   lock file) bundles, minified, as an ES module for the browser (ES2022):

   - the web client, ``client_sdk/web/src/index.js``: an entry ``export * from "…/index.js"``,
     so every export stays in, as a page importing the package gets it before its own
     bundler drops what the page does not use;
   - ``bench/web/amplify-entry.js``: what a page imports from Amplify for the same job
     (``Amplify.configure``, ``fetchAuthSession`` with a Cognito identity pool, and the
     ``PubSub`` class of ``@aws-amplify/pubsub``, the AWS IoT provider, subscribing to a
     topic). aws-amplify v6 no longer carries PubSub: it is the separate package.

   Both are compressed with gzip -9 (Python's ``gzip``), as a server would send them.
   Goals: ≤ 25 KiB (25,600 bytes) gzipped, and ≤ 0.6 of Amplify's.
2. **In Chromium** (``bench/web_catchup.py``, against one local stack started here): the
   catch-up of 10,000 changes by ``subscribe(channel, cb, {after: 0})`` in a page
   (``catchup_changes_per_s``, median of 3 runs, each in a new page; goal ≥ 5,000/s), measured
   side by side with the Python client (``client_sdk``) catching up the same change log in
   the same run, and the API's own read rate; and the client's cost per pushed change
   (``overhead_p50_ms``/``overhead_p99_ms``): the page's ``performance.now()`` in the
   application callback minus the same clock in a ``message`` listener on the WebSocket
   (a subclass passed as ``options.WebSocket``) when the frame carrying that change arrived,
   over 500 live ``PutItem`` changes at 25/s, in a cross-origin-isolated page (5 µs clock).

Usage: ``.venv/bin/python bench/web_client.py [--sizes-only] [--profile] [--output FILE]``:
about 2.5 minutes (the 10,000 ``PutItem`` take about 1 minute); ``--sizes-only``: a few
seconds once ``npm ci`` has run (about 15 s the first time). Needs Node 20 or later and
npm, and Chromium (``tests/support/browser.py``) unless ``--sizes-only``. Writes
``bench/results/web_client.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.e2e import exit_on_signal  # noqa: E402
from bench.report import goal, show_report  # noqa: E402

WEB = ROOT / "bench" / "web"
STAMP = WEB / "node_modules" / ".installed"  # as the Makefile's stamps: newer than the lock
ESBUILD = WEB / "node_modules" / ".bin" / "esbuild"
CLIENT_ENTRY = ROOT / "client_sdk" / "web" / "src" / "index.js"
AMPLIFY_ENTRY = WEB / "amplify-entry.js"
AMPLIFY_PACKAGES = ("aws-amplify", "@aws-amplify/pubsub", "@aws-amplify/auth", "@aws-amplify/core")
ESBUILD_FLAGS = (
    "--bundle",
    "--minify",
    "--format=esm",
    "--platform=browser",
    "--target=es2022",
    "--log-level=warning",
)
GOAL_GZ_BYTES = 25_600
GOAL_RATIO = 0.6
GOAL_CATCHUP_PER_S = 5000


class BenchError(Exception):
    """The benchmark could not run (no Node, npm ci or esbuild failed)."""


def install_tools() -> None:
    """``npm ci`` in bench/web unless its node_modules is newer than package(-lock).json."""
    inputs = [WEB / "package.json", WEB / "package-lock.json"]
    if STAMP.exists() and all(STAMP.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        return
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        raise BenchError("bench/web_client.py needs Node 20 or later and npm")
    major = subprocess.run(
        [node, "-p", "process.versions.node.split('.')[0]"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if int(major) < 20:
        raise BenchError(f"bench/web_client.py needs Node 20 or later (found {major.strip()})")
    print("npm ci in bench/web …", flush=True)
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"npm ci in {WEB} failed (exit {done.returncode})")
    STAMP.touch()


def bundle(entry: Path) -> bytes:
    """Everything ``entry`` exports, bundled and minified by esbuild (``ESBUILD_FLAGS``): the
    bundle's entry is ``export * from "<entry>"``, given on standard input."""
    source = f"export * from {json.dumps(str(entry))};\n"
    done = subprocess.run(
        [str(ESBUILD), *ESBUILD_FLAGS],
        input=source.encode(),
        capture_output=True,
        cwd=WEB,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"esbuild failed on {entry}:\n{done.stderr.decode(errors='replace')}")
    if not done.stdout.strip():
        raise BenchError(f"esbuild made an empty bundle of {entry}")
    return done.stdout


def gzipped_size(data: bytes) -> int:
    """Bytes after gzip -9."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def tool_versions() -> dict[str, str]:
    """esbuild's and the Amplify packages' versions, as installed."""
    versions = {
        "esbuild": subprocess.run(
            [str(ESBUILD), "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    }
    for name in AMPLIFY_PACKAGES:
        manifest = WEB / "node_modules" / name / "package.json"
        versions[name] = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return versions


def bundle_sizes() -> dict[str, Any]:
    """Both bundles' minified and gzipped sizes, their ratio and the tools' versions."""
    install_tools()
    client = bundle(CLIENT_ENTRY)
    amplify = bundle(AMPLIFY_ENTRY)
    client_gz, amplify_gz = gzipped_size(client), gzipped_size(amplify)
    return {
        "bundle_gz_bytes": client_gz,
        "bundle_min_bytes": len(client),
        "amplify_pubsub_gz_bytes": amplify_gz,
        "amplify_pubsub_min_bytes": len(amplify),
        "ratio_vs_amplify": round(client_gz / amplify_gz, 3),
        "versions": tool_versions(),
    }


def browser_figures(args: argparse.Namespace) -> dict[str, Any]:
    """The web client's catch-up rate and per-change overhead in Chromium, with the Python
    client's catch-up of the same change log in the same run (``bench/web_catchup.py``);
    ``None`` figures with ``--sizes-only``."""
    if args.sizes_only:
        return {"catchup_changes_per_s": None, "overhead_p50_ms": None}
    from bench.fanout import BenchmarkError
    from bench.web_catchup import measure

    try:
        run = measure(
            changes=args.changes,
            runs=args.runs,
            live=args.live,
            live_rate=args.live_rate,
            putitem_sample=min(args.putitem_sample or args.changes, args.changes),
            profile=args.profile,
            say=lambda text: print(text, flush=True),
        )
    except (BenchmarkError, FileNotFoundError) as exc:
        raise BenchError(str(exc)) from exc
    web = [r["catchup_changes_per_s"] for r in run["web_runs"]]
    python = [r["catchup_changes_per_s"] for r in run["python_runs"]]
    web_api = [r["api_only_changes_per_s"] for r in run["web_runs"]]
    python_api = [r["api_only_changes_per_s"] for r in run["python_runs"]]
    rate, baseline = statistics.median(web), statistics.median(python)
    overhead = run["overhead"]["overhead"]
    return {
        "catchup_changes_per_s": round(rate),
        "catchup_runs_changes_per_s": web,
        "catchup_changes": args.changes,
        "python_client_catchup_changes_per_s": round(baseline),
        "python_client_catchup_runs_changes_per_s": python,
        "catchup_ratio_vs_python": round(rate / baseline, 2),
        "api_read_changes_per_s_browser": round(statistics.median(web_api)),
        "api_read_changes_per_s_python": round(statistics.median(python_api)),
        "api_parallel_changes_per_s_browser": round(
            statistics.median(r["api_parallel_changes_per_s"] for r in run["web_runs"])
        ),
        "overhead_p50_ms": overhead["p50_ms"],
        "overhead_p99_ms": overhead["p99_ms"],
        "overhead_changes": overhead["count"],
        "browser_run": run,
    }


def build_report(sizes: dict[str, Any], browser: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers, goals and parameters."""
    gz, ratio = sizes["bundle_gz_bytes"], sizes["ratio_vs_amplify"]
    browser = dict(browser)
    details = browser.pop("browser_run", None)
    rate = browser["catchup_changes_per_s"]
    return {
        "benchmark": "web_client",
        "bundle_gz_bytes": gz,
        "bundle_min_bytes": sizes["bundle_min_bytes"],
        "amplify_pubsub_gz_bytes": sizes["amplify_pubsub_gz_bytes"],
        "amplify_pubsub_min_bytes": sizes["amplify_pubsub_min_bytes"],
        "ratio_vs_amplify": ratio,
        "goal_gz_bytes": GOAL_GZ_BYTES,
        "goal_ratio": GOAL_RATIO,
        **browser,
        "goals": {
            "bundle_gz_bytes": goal(f"<= {GOAL_GZ_BYTES:,} bytes", gz, gz <= GOAL_GZ_BYTES),
            "ratio_vs_amplify": goal(f"<= {GOAL_RATIO:g}", ratio, ratio <= GOAL_RATIO),
            "catchup_changes_per_s": goal(
                f">= {GOAL_CATCHUP_PER_S:,} changes/s in Chromium",
                rate,
                None if rate is None else rate >= GOAL_CATCHUP_PER_S,
            ),
        },
        "parameters": {
            "client_entry": str(CLIENT_ENTRY.relative_to(ROOT)),
            "amplify_entry": str(AMPLIFY_ENTRY.relative_to(ROOT)),
            "esbuild_flags": list(ESBUILD_FLAGS),
            "gzip_level": 9,
        },
        "versions": sizes["versions"],
        "browser": details,
    }


OVERHEAD_MEANING = (
    "overhead = the page's performance.now() in the application callback minus the same\n"
    "clock in a 'message' listener on the WebSocket (a subclass passed as options.WebSocket)\n"
    "when the frame carrying that change arrived, in a cross-origin-isolated page (5 us\n"
    "clock): the client's own work per pushed change before the application sees it (MQTT\n"
    "decoding, JSON parsing, ordering, delivery; the PUBACK goes after), none of the network's."
)


def render_browser(report: dict[str, Any]) -> list[str]:
    """The Chromium part of the printed summary."""
    run = report["browser"]
    writes, overhead = run["writes"], run["overhead"]
    put = writes["putitem_path"]
    rest = writes["publisher_in_process"]
    web, python = run["web_runs"], run["python_runs"]

    def rates(runs: list[dict[str, Any]], key: str) -> str:
        return ", ".join(f"{r[key]:,.0f}" for r in runs)

    lines = [
        f"catch-up of {report['catchup_changes']:,} changes (subscribe after 0 → callback has the "
        f"last), {len(web)} runs, Chromium {run['chromium']}",
        f"  change log: {put['changes']} through PutItem → stream → publisher function in "
        f"{put['to_head_s']} s ({put['changes_per_s']:g}/s: all {writes['changes']:,} would take "
        f"~{put['all_would_take_s']:,.0f} s)"
        + (
            f", the other {rest['changes']:,} through the publisher in-process in "
            f"{rest['write_s']} s"
            if rest
            else ""
        ),
        f"  {'':34} {'median/s':>10}   runs",
        f"  {'web client (Chromium)':34} {report['catchup_changes_per_s']:>10,}   "
        f"{rates(web, 'catchup_changes_per_s')}",
        f"  {'Python client (client_sdk)':34} "
        f"{report['python_client_catchup_changes_per_s']:>10,}   "
        f"{rates(python, 'catchup_changes_per_s')}",
        f"  {'API alone, from the page':34} {report['api_read_changes_per_s_browser']:>10,}   "
        f"{rates(web, 'api_only_changes_per_s')}",
        f"  {'API alone, from Python':34} {report['api_read_changes_per_s_python']:>10,}   "
        f"{rates(python, 'api_only_changes_per_s')}",
        f"  {'API, ' + str(web[0]['api_parallel_reads']) + ' in flight, from the page':34} "
        f"{report['api_parallel_changes_per_s_browser']:>10,}   "
        f"{rates(web, 'api_parallel_changes_per_s')}",
        "  moto alone answering one 1,000-entry page (Query, raw HTTP): "
        + ", ".join(f"{k.replace('_', ' ')}: {v} ms" for k, v in run["moto_query_1000_ms"].items()),
        f"  web / Python: {report['catchup_ratio_vs_python']:.2f}",
        "",
        f"overhead per pushed change, {overhead['changes']} PutItems at "
        f"{overhead['rate_per_s']:g}/s ({overhead['matched']} matched to their frame):",
        f"  p50 {report['overhead_p50_ms']} ms, p90 {overhead['overhead']['p90_ms']} ms, "
        f"p99 {report['overhead_p99_ms']} ms, max {overhead['overhead']['max_ms']} ms",
        *("  " + line for line in OVERHEAD_MEANING.split("\n")),
    ]
    if "profiled_run" in run:
        lines.append("")
        lines.append("CPU profile of one more web catch-up (self time, top functions):")
        profiled = run["profiled_run"]
        profile = profiled["profile"]
        lines[-1] = (
            f"CPU profile of one more web catch-up ({profiled['catchup_changes_per_s']:,}/s): "
            f"the page's main thread was busy {profile['busy_ms']:,.0f} ms of "
            f"{profile['profiled_ms']:,.0f} ms profiled (the catch-up's "
            f"{profiled['catchup_window_ms']:,.0f} ms + 300 ms); top self time:"
        )
        for row in profile["top_self_time"]:
            lines.append(
                f"  {row['self_ms']:>8.1f} ms {row['share']:>6.1%}  {row['function']} "
                f"{row['where']}"
            )
    if "profiled_overhead" in run:
        profiled = run["profiled_overhead"]
        profile = profiled["profile"]
        lines.append("")
        lines.append(
            f"CPU profile of {profiled['changes']} more live changes (overhead p50 "
            f"{profiled['overhead']['p50_ms']} ms under the profiler): main thread busy "
            f"{profile['busy_ms']:,.0f} ms of {profile['profiled_ms']:,.0f} ms; top self time:"
        )
        for row in profile["top_self_time"][:15]:
            lines.append(
                f"  {row['self_ms']:>8.1f} ms {row['share']:>6.1%}  {row['function']} "
                f"{row['where']}"
            )
    lines.append(f"whole browser run: {run['setup']['total_s']} s")
    return lines


def render_table(report: dict[str, Any]) -> str:
    """The printed summary."""
    lines = [
        f"{'bundle (esbuild, minified, ESM, browser)':44} {'min bytes':>10} {'gzip -9':>10}",
        f"{'@tidings/client (every export)':44} {report['bundle_min_bytes']:>10,} "
        f"{report['bundle_gz_bytes']:>10,}",
        f"{'Amplify v6 Auth + PubSub':44} {report['amplify_pubsub_min_bytes']:>10,} "
        f"{report['amplify_pubsub_gz_bytes']:>10,}",
        f"ratio (gzipped, ours / Amplify's): {report['ratio_vs_amplify']:.3f}",
        "",
    ]
    if report["browser"] is None:
        lines += ["catchup_changes_per_s, overhead_p50_ms: - (--sizes-only)", ""]
    else:
        lines += [*render_browser(report), ""]
    for name, entry in report["goals"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[entry["pass"]]
        value = "-" if entry["value"] is None else f"{entry['value']:,}"
        lines.append(f"goal {name}: {entry['target']}, measured {value}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "web_client.json"
    )
    parser.add_argument(
        "--sizes-only", action="store_true", help="bundle sizes only: no stack, no Chromium"
    )
    parser.add_argument("--changes", type=int, default=10_000, help="catch-up size (10,000)")
    parser.add_argument("--runs", type=int, default=3, help="catch-up runs per client (3)")
    parser.add_argument("--live", type=int, default=500, help="live changes for the overhead")
    parser.add_argument("--live-rate", type=float, default=25.0, help="their PutItems/s (25)")
    parser.add_argument(
        "--putitem-sample",
        type=int,
        default=None,
        help="changes written through PutItem and the stream (all); the rest in-process",
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more web catch-up under the CPU profiler"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    try:
        sizes = bundle_sizes()
        browser = browser_figures(args)
    except BenchError as exc:
        print(f"web_client: {exc}", file=sys.stderr)
        return 1
    report = build_report(sizes, browser)
    show_report(report, args.output, render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
