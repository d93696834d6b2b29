"""Micro-benchmarks of the gateway's per-packet and per-delivery work.

What the unit tests used to assert with a stopwatch is measured here instead:

* **codec, byte at a time** — feeding a 6,000- and a 60,000-byte PUBLISH to the MQTT decoder
  one byte per call (a client on a slow link). The time must grow linearly with the size: the
  goal is a ratio ≤ 20 for 10x the bytes (a decoder that re-scans its buffer is quadratic:
  about 100x);
* **policy decision** — one ``iot:Receive`` decision against a role policy and an IoT policy
  with policy variables, as the gateway makes for every delivery; goal ≤ 200 µs.

Usage::

    .venv/bin/python bench/micro.py            # a few seconds
    .venv/bin/python bench/micro.py --quick

Writes ``bench/results/micro.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.report import goal, show_report  # noqa: E402
from infra.local.awsauth.iam_policy import is_allowed  # noqa: E402
from infra.local.iot.mqtt_codec import PacketDecoder, Publish, encode_publish  # noqa: E402

SUB = "us-east-1:00000000-0000-0000-0000-000000000001"
OWN = "tidings/dev/users/${cognito-identity.amazonaws.com:sub}"
ARN = "arn:aws:iot:us-east-1:123456789012"
VARIABLES = {"cognito-identity.amazonaws.com:sub": SUB}
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["iot:Receive"],
            "Resource": [
                f"{ARN}:topic/tidings/dev/users/${{cognito-identity.amazonaws.com:sub}}/*"
            ],
        }
    ],
}
IOT_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": f"{ARN}:topic/{OWN}/todos",
        }
    ],
}


def feed_byte_at_a_time(size: int) -> float:
    """Seconds to decode one PUBLISH of ``size`` payload bytes fed one byte per call."""
    decoder = PacketDecoder(protocol_level=4)
    wire = encode_publish("t", b"z" * size, 0, None, 4)
    started = time.perf_counter()
    packets: list[Any] = []
    for i in range(len(wire)):
        packets += decoder.feed(wire[i : i + 1])
    elapsed = time.perf_counter() - started
    assert packets == [Publish("t", b"z" * size)]
    return elapsed


def policy_decision_us(count: int) -> float:
    """Microseconds per ``iot:Receive`` decision (mean over ``count``)."""
    sets = [[ROLE_POLICY], [IOT_POLICY]]
    resource = f"{ARN}:topic/tidings/dev/users/{SUB}/todos"
    assert is_allowed(sets, "iot:Receive", resource, VARIABLES)
    started = time.perf_counter()
    for _ in range(count):
        is_allowed(sets, "iot:Receive", resource, VARIABLES)
    return (time.perf_counter() - started) / count * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run the micro-benchmarks, print their table and write the results file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "micro.json")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    small = min(feed_byte_at_a_time(6_000) for _ in range(repeats))
    large = min(feed_byte_at_a_time(60_000) for _ in range(repeats))
    ratio = large / small
    decision = min(policy_decision_us(2_000 if args.quick else 10_000) for _ in range(repeats))
    report = {
        "benchmark": "micro",
        "codec_byte_at_a_time_6k_ms": round(small * 1000, 1),
        "codec_byte_at_a_time_60k_ms": round(large * 1000, 1),
        "codec_growth_for_10x_bytes": round(ratio, 1),
        "policy_decision_us": round(decision, 1),
        "goals": [
            goal("codec growth for 10x bytes ≤ 20 (linear)", round(ratio, 1), ratio <= 20),
            goal("policy decision ≤ 200 µs", round(decision, 1), decision <= 200),
        ],
    }
    table = "\n".join(
        [
            f"codec, byte at a time: 6 kB {small * 1000:.1f} ms, 60 kB {large * 1000:.1f} ms "
            f"(x{ratio:.1f} for 10x the bytes; goal ≤ 20)",
            f"policy decision (iot:Receive, two policy sets): {decision:.1f} µs (goal ≤ 200)",
        ]
    )
    show_report(report, args.output, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
