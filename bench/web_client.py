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
2. **In the browser** (``catchup_changes_per_s``, ``overhead_p50_ms``): measured by the
   Chromium run; ``null`` until it is in.

Usage: ``.venv/bin/python bench/web_client.py [--output FILE]``: a few seconds once
``npm ci`` has run (about 15 s the first time). Needs Node 20 or later and npm. Writes
``bench/results/web_client.json``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


def browser_figures() -> dict[str, Any]:
    """The web client's catch-up rate and callback overhead, measured in Chromium by the
    browser run; ``None`` when that run is not part of this benchmark."""
    return {"catchup_changes_per_s": None, "overhead_p50_ms": None}


def build_report(sizes: dict[str, Any], browser: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers, goals and parameters."""
    gz, ratio = sizes["bundle_gz_bytes"], sizes["ratio_vs_amplify"]
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
        },
        "parameters": {
            "client_entry": str(CLIENT_ENTRY.relative_to(ROOT)),
            "amplify_entry": str(AMPLIFY_ENTRY.relative_to(ROOT)),
            "esbuild_flags": list(ESBUILD_FLAGS),
            "gzip_level": 9,
        },
        "versions": sizes["versions"],
    }


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
    for name, entry in report["goals"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[entry["pass"]]
        lines.append(f"goal {name}: {entry['target']}, measured {entry['value']:,}: {verdict}")
    for name in ("catchup_changes_per_s", "overhead_p50_ms"):
        value = report[name]
        lines.append(f"{name}: {'- (measured by the Chromium run)' if value is None else value}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--output", type=Path, default=ROOT / "bench" / "results" / "web_client.json"
    )
    args = parser.parse_args(argv)
    try:
        sizes = bundle_sizes()
    except BenchError as exc:
        print(f"web_client: {exc}", file=sys.stderr)
        return 1
    report = build_report(sizes, browser_figures())
    show_report(report, args.output, render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
