"""Fan-out benchmark: one publisher, N WebSocket subscribers; Tidings vs amqtt (vs mosquitto).

Measured side by side in one run, for QoS 0 and QoS 1, 200-byte payloads:

* **deliveries/s at maximum rate** — the publisher sends as fast as the broker takes it,
  bounded by a window of outstanding messages (a message is outstanding until every subscriber
  has received it), so the broker is saturated but never buffers without bound;
* **publish → receive latency** (p50/p99) at a fixed offered load of 10,000 deliveries/s
  (100 publishes/s x 100 subscribers): the publisher writes ``time.time_ns()`` into the payload,
  the subscribers subtract it from their receive time;
* for the Tidings gateway only: how many authenticated WebSocket connections it holds (each one
  TLS + SigV4-presigned upgrade + CONNECT/CONNACK) and its RSS per idle connection.

The brokers: the Tidings gateway (``tidings gateway``: TLS, SigV4, IAM + IoT policy evaluation
on connect, subscribe, publish and receive; ``--publish-rate 0`` lifts AWS IoT's
100 publishes/s per-connection limit, which a fan-out benchmark would otherwise hit), amqtt's
broker (plain WebSocket, anonymous) and mosquitto where installed (plain TCP on 127.0.0.1; its
WebSocket listener ignores the bind address). Every broker listens on 127.0.0.1 only and is
stopped (by PID) when the benchmark ends, even on error.

Subscribers, publisher and broker each run in their own process, and the load clients are the
lean asyncio clients of ``bench/mqtt_load.py``, so the numbers describe the broker rather than
the client. The table shows each process's CPU use during the max-rate phase: a broker near
100 % is the bottleneck; a load client near 100 % would mean the number is a lower bound.

Usage::

    .venv/bin/python bench/fanout.py            # full run, a few minutes
    .venv/bin/python bench/fanout.py --quick    # under a minute

Results go to ``bench/results/fanout.json`` (``--output`` to change). Exit status 0 even when
a goal is missed (this is a measurement); 1 when a broker does not start, a load process fails
or a QoS 1 message is lost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import mqtt_load as load  # noqa: E402
from bench.report import goal, show_report  # noqa: E402
from infra.local.awsauth.credential_store import write_credentials_file  # noqa: E402
from infra.local.awsauth.temporary_credentials import mint_temporary_credential  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
TOPIC = "bench/fanout"
PAYLOAD_BYTES = 200
HEADLINE_QOS = 1
"""Tidings publishes every change at QoS 1, so the headline numbers are QoS 1's."""
BROKERS = ("tidings", "amqtt", "mosquitto")
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "fanout.json"

GOAL_FANOUT_RATIO = 2.0
GOAL_P99_MS = 5.0
GOAL_CONNECTIONS = 5000
GOAL_KIB_PER_CONNECTION = 64.0


class BenchmarkError(Exception):
    """A real failure (not a missed goal): a broker did not start, a load process failed,
    or QoS 1 messages were lost."""


# ---------------------------------------------------------------------------------- brokers


@dataclass
class Broker:
    """A broker subprocess we started, and how load clients reach it."""

    name: str
    process: subprocess.Popen[bytes]
    target: load.Target
    log_file: Path
    stop_signal: int = signal.SIGTERM

    @property
    def pid(self) -> int:
        """The broker's process id."""
        return self.process.pid

    def stop(self) -> None:
        """Stop the broker by its PID: the stop signal, then SIGKILL after 10 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        """The end of the broker's log, for error messages."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _parent_death_signal() -> Any:
    """A pre-exec hook making the child get SIGTERM if the benchmark dies (Linux only)."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


def _spawn(command: list[str], log_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with log_file.open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_parent_death_signal(),
        )


def _listening(broker: Broker, port: int, timeout: float = 30.0) -> Broker:
    """``broker`` once it listens on ``port``; stopped, and an error raised, if it does not."""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if broker.process.poll() is not None:
                raise BenchmarkError(f"{broker.name} exited at start-up:\n{broker.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return broker
            time.sleep(0.1)
        raise BenchmarkError(f"{broker.name} did not listen on port {port} within {timeout:.0f} s")
    except BaseException:
        broker.stop()
        raise


def bench_policy() -> dict[str, Any]:
    """The benchmark identities' policy: connect as ``bench-*``, use topics under ``bench/``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/bench-*"},
            {
                "Effect": "Allow",
                "Action": "iot:Subscribe",
                "Resource": f"{ARN}:topicfilter/bench/*",
            },
            {
                "Effect": "Allow",
                "Action": ["iot:Receive", "iot:Publish"],
                "Resource": f"{ARN}:topic/bench/*",
            },
        ],
    }


def _tidings_command() -> list[str]:
    script = Path(sys.executable).with_name("tidings")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "infra.cli"]


def start_gateway(workdir: Path) -> Broker:
    """Start ``tidings gateway`` on a free port with one benchmark credential."""
    document = bench_policy()
    credential = mint_temporary_credential(
        "bench-role/bench-session", [[document], [document]], lifetime_s=6 * 3600
    )
    credentials_file = workdir / "credentials.json"
    write_credentials_file(credentials_file, [credential])
    log_file = workdir / "gateway.log"
    command = [
        *_tidings_command(),
        "gateway",
        "--port",
        "0",
        "--state-dir",
        str(workdir / "state"),
        "--credentials",
        str(credentials_file),
        "--publish-rate",
        "0",
    ]
    process = _spawn(command, log_file, ROOT)
    placeholder = load.Target("tidings", "wss", 0)
    broker = Broker("tidings", process, placeholder, log_file, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while True:
        text = log_file.read_text(encoding="utf-8", errors="replace")
        if "CA file for clients:" in text:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise BenchmarkError(f"the Tidings gateway did not start:\n{broker.log_tail()}")
        time.sleep(0.05)
    start = text.index("{")
    info, _ = json.JSONDecoder().raw_decode(text[start:])
    port = urlparse(info["mqtt"]).port
    assert port is not None
    broker.target = load.Target(
        "tidings",
        "wss",
        port,
        ca_file=info["ca_file"],
        server_hostname="localhost",
        credentials=(
            credential.access_key_id,
            credential.secret_access_key,
            credential.session_token or "",
        ),
        region=REGION,
    )
    return broker


def start_amqtt(workdir: Path) -> Broker:
    """Start amqtt's broker with one WebSocket listener on 127.0.0.1 (anonymous, no TLS)."""
    port = _free_port()
    config = workdir / "amqtt.yaml"
    config.write_text(
        "listeners:\n"
        "  default:\n"
        "    type: ws\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n"
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n",
        encoding="utf-8",
    )
    script = Path(sys.executable).with_name("amqtt")
    command = (
        [str(script)] if script.exists() else [sys.executable, "-m", "amqtt.scripts.broker_script"]
    )
    log_file = workdir / "amqtt.log"
    process = _spawn([*command, "-c", str(config)], log_file, workdir)
    broker = Broker(
        "amqtt", process, load.Target("amqtt", "ws", port, path="/mqtt"), log_file, signal.SIGINT
    )
    return _listening(broker, port)


def start_mosquitto(workdir: Path, executable: str) -> Broker:
    """Start mosquitto with one TCP listener on 127.0.0.1 (anonymous)."""
    port = _free_port()
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        "max_queued_messages 100000\n"
        "persistence false\n",
        encoding="utf-8",
    )
    log_file = workdir / "mosquitto.log"
    process = _spawn([executable, "-c", str(config)], log_file, workdir)
    broker = Broker("mosquitto", process, load.Target("mosquitto", "tcp", port), log_file)
    return _listening(broker, port)


# ---------------------------------------------------------------------------------- workers


class Worker:
    """A load process and the pipe that drives it."""

    def __init__(self, name: str, target: Any, args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.pipe, child = context.Pipe()
        self.process = context.Process(target=target, args=(*args, child), name=name, daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        """The worker's process id."""
        assert self.process.pid is not None
        return self.process.pid

    def call(self, command: tuple[Any, ...] | None, expect: str, timeout: float) -> dict[str, Any]:
        """Send ``command`` (if any) and wait for the reply named ``expect``."""
        if command is not None:
            self.pipe.send(command)
        if not self.pipe.poll(timeout):
            raise BenchmarkError(f"{self.name}: no {expect!r} within {timeout:.0f} s")
        try:
            kind, body = self.pipe.recv()
        except EOFError as exc:
            raise BenchmarkError(f"{self.name} exited unexpectedly") from exc
        if kind == "error":
            raise BenchmarkError(f"{self.name} failed: {body}")
        if kind != expect:
            raise BenchmarkError(f"{self.name}: expected {expect!r}, got {kind!r}")
        result: dict[str, Any] = body
        return result

    def stop(self) -> None:
        """Ask the worker to stop; terminate it (by PID) if it does not."""
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.pipe.send(("stop",))
                if self.pipe.poll(5):
                    self.pipe.recv()
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.pipe.close()


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class CpuMeter:
    """CPU seconds of several processes, and of the whole machine, between two moments."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {name: _cpu(pid) for name, pid in pids.items()}
        self.machine = _machine_busy()
        self.started = time.monotonic()

    def percent(self) -> dict[str, float]:
        """CPU use of each process since construction, in % of one core; ``other`` is what
        the rest of the machine used meanwhile (other programs competing for the CPUs)."""
        elapsed = max(1e-9, time.monotonic() - self.started)
        used = {
            name: round(100.0 * (_cpu(pid) - self.start[name]) / elapsed, 1)
            for name, pid in self.pids.items()
        }
        machine = 100.0 * (_machine_busy() - self.machine) / elapsed
        used["other"] = round(max(0.0, machine - sum(used.values())), 1)
        return used


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


QUIET_CPU_PERCENT = 25.0
"""Busy CPU (in % of one core) from other programs below which the machine counts as quiet."""


def wait_for_quiet(max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) until other programs use little CPU; returns their use.

    On a shared machine another program's burst would be measured as the broker's slowness.
    Our own servers are idle at this point, so the machine's busy CPU is someone else's.
    """
    deadline = time.monotonic() + max_wait_s
    announced = False
    while True:
        cores = psutil.cpu_percent(interval=0.5) * (psutil.cpu_count() or 1)
        if cores < QUIET_CPU_PERCENT or time.monotonic() >= deadline:
            if announced or cores >= QUIET_CPU_PERCENT:
                state = "quiet" if cores < QUIET_CPU_PERCENT else "still busy, measuring anyway"
                print(f"  other programs use {cores:.0f}% CPU: {state}", flush=True)
            return round(float(cores), 1)
        if not announced:
            print(
                f"  waiting up to {max_wait_s:.0f} s for other programs to quiet down "
                f"(they use {cores:.0f}% CPU)...",
                flush=True,
            )
            announced = True


def pin_cpus(broker_pid: int, *load_pids: int) -> None:
    """Broker on the first allowed CPU, load processes on the others.

    Without this the scheduler tends to wake a subscriber on the broker's CPU (wake-affine),
    where it waits for the broker's time slice: milliseconds of latency that belong to neither.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    with contextlib.suppress(OSError):
        os.sched_setaffinity(broker_pid, {cpus[0]})
        for pid in load_pids:
            os.sched_setaffinity(pid, set(cpus[1:]))


def _wait_watermark(watermark: Any, seq: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while watermark.value < seq:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@dataclass(frozen=True)
class Settings:
    """What one run measures."""

    subscribers: int
    connections: int
    duration_s: float
    latency_duration_s: float
    warmup_s: float
    window: int
    batch: int
    pin: bool
    """Pin the broker to CPU 0 and the load processes to the other CPUs."""
    quiet_wait_s: float
    """Before each run, how long to wait at most for other programs to go idle."""
    latency_load: float
    payload_bytes: int = PAYLOAD_BYTES


def run_fanout(broker: Broker, qos: int, settings: Settings) -> dict[str, Any]:
    """Max-rate and fixed-load phases for one broker and QoS; raises on QoS 1 loss."""
    context = multiprocessing.get_context("spawn")
    watermark = context.RawValue("q", 0)
    subscribers: Worker | None = None
    publisher: Worker | None = None
    n = settings.subscribers
    busy_before = wait_for_quiet(settings.quiet_wait_s)
    try:
        subscribers = Worker(
            f"{broker.name} subscribers",
            load.subscriber_process,
            (broker.target, n, TOPIC, qos, watermark),
        )
        subscribers.call(None, "ready", 60 + n * 0.2)
        publisher = Worker(
            f"{broker.name} publisher",
            load.publisher_process,
            (broker.target, TOPIC, qos, settings.payload_bytes, watermark),
        )
        publisher.call(None, "ready", 60)
        if settings.pin:
            pin_cpus(broker.pid, subscribers.pid, publisher.pid)

        drain = 10.0 if qos else 3.0  # at QoS 0 a dropped last message stalls the watermark
        warm = publisher.call(
            ("max", load.PHASE_WARMUP, settings.warmup_s, settings.window, settings.batch),
            "done",
            settings.warmup_s + 60,
        )
        _wait_watermark(watermark, warm["last_seq"], drain)

        meter = CpuMeter(
            {"broker": broker.pid, "subscribers": subscribers.pid, "publisher": publisher.pid}
        )
        peak = publisher.call(
            ("max", load.PHASE_MAX_RATE, settings.duration_s, settings.window, settings.batch),
            "done",
            settings.duration_s + 60,
        )
        _wait_watermark(watermark, peak["last_seq"], drain)
        peak_cpu = meter.percent()

        rate = settings.latency_load / n
        meter = CpuMeter(
            {"broker": broker.pid, "subscribers": subscribers.pid, "publisher": publisher.pid}
        )
        steady = publisher.call(
            ("rate", load.PHASE_LATENCY, rate, settings.latency_duration_s, settings.window),
            "done",
            settings.latency_duration_s + 60,
        )
        _wait_watermark(watermark, steady["last_seq"], drain)
        steady_cpu = meter.percent()

        published = steady["last_seq"]
        expected = published * n
        deadline = time.monotonic() + (drain if qos else 1.0)
        while True:
            stats = subscribers.call(("stats",), "stats", 30)
            if stats["received_total"] >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        acks = publisher.call(("acks", drain), "acks", drain + 30)
    finally:
        for worker in (publisher, subscribers):
            if worker is not None:
                worker.stop()

    phases = stats["phases"]
    peak_stats = phases[str(load.PHASE_MAX_RATE)]
    steady_stats = phases[str(load.PHASE_LATENCY)]
    peak_expected = (peak["last_seq"] - peak["first_seq"] + 1) * n
    steady_expected = (steady["last_seq"] - steady["first_seq"] + 1) * n
    peak_seconds = max(1e-9, (peak_stats["last_ns"] - peak["start_ns"]) / 1e9)
    steady_seconds = max(1e-9, (steady_stats["last_ns"] - steady["start_ns"]) / 1e9)
    lost = max(0, expected - stats["received_total"])
    result = {
        "broker": broker.name,
        "qos": qos,
        "deliveries_per_s": round(peak_stats["deliveries"] / peak_seconds),
        "publishes_per_s": round((peak["last_seq"] - peak["first_seq"] + 1) / peak_seconds, 1),
        "max_rate": {
            "published": peak["last_seq"] - peak["first_seq"] + 1,
            "deliveries": peak_stats["deliveries"],
            "expected_deliveries": peak_expected,
            "seconds": round(peak_seconds, 3),
            "latency_under_saturation": {k: v for k, v in peak_stats.items() if k.endswith("_ms")},
            "cpu_percent": peak_cpu,
            "bound_by": bottleneck(peak_cpu, settings.pin),
        },
        "fixed_load": {
            "offered_deliveries_per_s": settings.latency_load,
            "publishes_per_s": round(rate, 2),
            "achieved_deliveries_per_s": round(steady_stats["deliveries"] / steady_seconds),
            "deliveries": steady_stats["deliveries"],
            "expected_deliveries": steady_expected,
            **{k: v for k, v in steady_stats.items() if k.endswith("_ms")},
            "subscriber_mean_ms": _spread(stats["fixed_load_mean_ms_by_subscriber"]),
            "cpu_percent": steady_cpu,
        },
        "other_cpu_percent_before": busy_before,
        "published_total": published,
        "lost": lost,
        "gaps": stats["gaps"],
        "reordered": stats["reordered"],
        "subscribers_disconnected": stats["closed"],
        "disconnect_reasons": stats["close_reasons"],
        "publisher_acked": acks["acked"] if qos else None,
    }
    if qos == 1 and (lost or stats["closed"] or acks["acked"] < acks["sent"]):
        raise BenchmarkError(
            f"{broker.name} lost QoS 1 messages: {lost} of {expected} deliveries missing, "
            f"{stats['closed']} subscribers disconnected {stats['close_reasons']}, "
            f"{acks['sent'] - acks['acked']} publishes unacknowledged"
        )
    return result


def bottleneck(cpu: dict[str, float], pinned: bool) -> str:
    """What limited a max-rate phase, judged from CPU use (% of one core).

    ``broker`` when the broker had a core to itself and used it; ``load client`` when the
    load processes (sharing the other core when pinned) used theirs, which makes the rate a
    lower bound for the broker; ``other programs`` when the machine was busy with something
    else; otherwise ``window`` (latency-bound: more outstanding messages would go faster).
    """
    if cpu["broker"] >= 85:
        return "broker"
    load_cpu = cpu["subscribers"] + cpu["publisher"] if pinned else cpu["subscribers"]
    if load_cpu >= 85:
        return "load client"
    if cpu["other"] >= QUIET_CPU_PERCENT:
        return "other programs"
    return "window"


def _spread(means: list[float]) -> dict[str, float | None]:
    """Fastest, median and slowest subscriber's mean latency: how long one fan-out takes."""
    if not means:
        return {"fastest": None, "median": None, "slowest": None}
    ordered = sorted(means)
    return {
        "fastest": ordered[0],
        "median": ordered[len(ordered) // 2],
        "slowest": ordered[-1],
    }


def run_connections(broker: Broker, count: int, concurrency: int) -> dict[str, Any]:
    """Open ``count`` authenticated connections to the gateway; RSS before and after."""
    gateway = psutil.Process(broker.pid)
    rss_before = gateway.memory_info().rss
    fds_before = gateway.num_fds()
    holder: Worker | None = None
    try:
        holder = Worker(
            "connection holder", load.holder_process, (broker.target, count, concurrency)
        )
        held = holder.call(None, "held", 120 + count * 0.05)
        time.sleep(1.0)  # let the gateway finish what the last handshakes queued
        rss_after = gateway.memory_info().rss
        fds_after = gateway.num_fds()
        idle = CpuMeter({"gateway": broker.pid})
        time.sleep(2.0)  # what holding the idle connections costs (timers, sweeps)
        idle_cpu = idle.percent()["gateway"]
        still_open = holder.call(("check",), "check", 30)["open"]
    finally:
        if holder is not None:
            holder.stop()
    per_connection = (rss_after - rss_before) / 1024 / still_open if still_open else None
    return {
        "attempted": count,
        "opened": held["opened"],
        "connections_held": still_open,
        "failed": held["failed"],
        "failure_reasons": held["failure_reasons"],
        "seconds_to_open": held["seconds"],
        "connections_per_s": round(held["opened"] / held["seconds"], 1)
        if held["seconds"]
        else None,
        "gateway_fds_added": fds_after - fds_before,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "kib_per_connection": round(per_connection, 2) if per_connection is not None else None,
        "gateway_idle_cpu_percent": idle_cpu,
    }


# ---------------------------------------------------------------------------------- report


def build_report(
    settings: Settings,
    runs: dict[str, dict[int, dict[str, Any]] | None],
    connections: dict[str, Any],
    qos_levels: list[int],
    seconds: float,
) -> dict[str, Any]:
    """The JSON document: headline numbers (QoS 1), every run's details, the goals."""
    tidings = runs.get("tidings") or {}
    amqtt = runs.get("amqtt") or {}
    mosquitto = runs.get("mosquitto")

    def rate(runs_of: dict[int, dict[str, Any]] | None, qos: int) -> float | None:
        run = (runs_of or {}).get(qos)
        return run["deliveries_per_s"] if run else None

    def ratio(qos: int) -> float | None:
        ours, theirs = rate(tidings, qos), rate(amqtt, qos)
        return round(ours / theirs, 2) if ours and theirs else None

    def fixed(runs_of: dict[int, dict[str, Any]], qos: int, key: str) -> float | None:
        run = runs_of.get(qos)
        return run["fixed_load"][key] if run else None

    headline = HEADLINE_QOS if HEADLINE_QOS in qos_levels else qos_levels[-1]
    ratios = {f"qos{q}": ratio(q) for q in qos_levels}
    p99s = {f"qos{q}": fixed(tidings, q, "p99_ms") for q in qos_levels}
    held = connections.get("connections_held")
    kib = connections.get("kib_per_connection")
    goals = {
        "fanout_vs_amqtt": goal(
            f">= {GOAL_FANOUT_RATIO:g}x amqtt's deliveries/s (every QoS)",
            ratios,
            all(r is not None and r >= GOAL_FANOUT_RATIO for r in ratios.values()),
        ),
        "p99_at_fixed_load": goal(
            f"p99 <= {GOAL_P99_MS:g} ms at {settings.latency_load:,.0f} deliveries/s (every QoS)",
            p99s,
            all(p is not None and p <= GOAL_P99_MS for p in p99s.values()),
        ),
        "connections": goal(
            f">= {GOAL_CONNECTIONS} connections at <= {GOAL_KIB_PER_CONNECTION:g} KiB each",
            {"connections_held": held, "kib_per_connection": kib},
            held is not None
            and kib is not None
            and held >= GOAL_CONNECTIONS
            and kib <= GOAL_KIB_PER_CONNECTION,
        ),
    }
    mosquitto_rate = rate(mosquitto, headline) if mosquitto is not None else None
    other = [
        max(run["max_rate"]["cpu_percent"]["other"], run["fixed_load"]["cpu_percent"]["other"])
        for by_qos in runs.values()
        if by_qos
        for run in by_qos.values()
    ]
    return {
        "tidings_deliveries_per_s": rate(tidings, headline),
        "amqtt_deliveries_per_s": rate(amqtt, headline),
        "ratio_vs_amqtt": ratio(headline),
        "p50_ms": fixed(tidings, headline, "p50_ms"),
        "p99_ms": fixed(tidings, headline, "p99_ms"),
        "amqtt_p50_ms": fixed(amqtt, headline, "p50_ms"),
        "amqtt_p99_ms": fixed(amqtt, headline, "p99_ms"),
        "mosquitto_deliveries_per_s": mosquitto_rate,
        "mosquitto_p50_ms": fixed(mosquitto, headline, "p50_ms") if mosquitto else None,
        "mosquitto_p99_ms": fixed(mosquitto, headline, "p99_ms") if mosquitto else None,
        "connections_held": held,
        "kib_per_connection": kib,
        "other_cpu_percent_max": max(other) if other else None,
        "parameters": {
            "subscribers": settings.subscribers,
            "payload_bytes": settings.payload_bytes,
            "qos": qos_levels,
            "headline_qos": headline,
            "duration_s": settings.duration_s,
            "latency_duration_s": settings.latency_duration_s,
            "warmup_s": settings.warmup_s,
            "window_messages": settings.window,
            "latency_load_deliveries_per_s": settings.latency_load,
            "connections": settings.connections,
            "tidings_publish_rate_limit": "off (--publish-rate 0; AWS IoT allows 100/s/connection)",
            "cpus": os.cpu_count(),
        },
        "goals": goals,
        "runs": {
            name: ({f"qos{q}": r for q, r in by_qos.items()} if by_qos is not None else None)
            for name, by_qos in runs.items()
        },
        "connection_test": connections,
        "seconds": round(seconds, 1),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """The human-readable summary."""
    p = report["parameters"]
    load_text = format(p["latency_load_deliveries_per_s"], ",.0f")
    lines = [
        f"Fan-out: 1 publisher -> {p['subscribers']} subscribers over WebSocket, "
        f"{p['payload_bytes']}-byte payloads; {p['duration_s']:g} s at max rate (window "
        f"{p['window_messages']} messages) + {p['latency_duration_s']:g} s at {load_text} "
        "deliveries/s per run",
        "Tidings gateway: TLS + SigV4 + IAM/IoT policy checks; --publish-rate 0 (AWS IoT's "
        "100 publishes/s per connection limit is off for this benchmark)",
        "",
        f"{'':14}| {'max rate':<55}| {'fixed load ' + load_text + ' deliveries/s':<44}|",
        f"{'broker':<10}{'QoS':>3} | {'deliveries/s':>12} {'CPU% brk/sub/pub':>17} {'lost':>8} "
        f"{'bound by':>14} "
        f"| {'p50 ms':>7} {'p99 ms':>7} {'fan-out ms':>11} {'achieved/s':>11}  "
        "| other CPU%",
    ]
    for name, by_qos in report["runs"].items():
        if by_qos is None:
            lines.append(f"{name}: not installed")
            continue
        for run in by_qos.values():
            cpu = run["max_rate"]["cpu_percent"]
            fixed = run["fixed_load"]
            cpu_text = "/".join(f"{cpu[k]:.0f}" for k in ("broker", "subscribers", "publisher"))
            spread = fixed["subscriber_mean_ms"]
            spread_text = (
                f"{spread['fastest']:.1f}-{spread['slowest']:.1f}"
                if spread["fastest"] is not None
                else "-"
            )
            other = max(cpu["other"], fixed["cpu_percent"]["other"])
            lines.append(
                f"{name:<10}{run['qos']:>3} | {_fmt(run['deliveries_per_s']):>12} "
                f"{cpu_text:>17} {run['lost']:>8} {run['max_rate']['bound_by']:>14} "
                f"| {_fmt(fixed['p50_ms'], '.2f'):>7} {_fmt(fixed['p99_ms'], '.2f'):>7} "
                f"{spread_text:>11} {_fmt(fixed['achieved_deliveries_per_s']):>11}  "
                f"| {other:>5.0f}"
            )
    lines += [
        "",
        "CPU% is % of one core during the max-rate phase; bound by says what limited it "
        "(a load-client bound makes the rate a lower bound for the broker); "
        "fan-out ms is the mean latency of the fastest and slowest subscriber; other CPU% is "
        "what other programs used meanwhile (high values make every number low).",
    ]
    other = report["other_cpu_percent_max"]
    if other is not None and other > QUIET_CPU_PERCENT:
        lines += [
            "",
            f"WARNING: other programs used up to {other:.0f}% CPU during these runs; on this "
            f"{p['cpus']}-CPU machine that depresses every number above. Re-run when it is idle.",
        ]
    c = report["connection_test"]
    if c:
        lines += [
            "",
            f"Tidings gateway connections (TLS + SigV4 upgrade + CONNECT/CONNACK): "
            f"{c['connections_held']:,} held of {c['attempted']:,} "
            f"({c['failed']} failed), opened in {c['seconds_to_open']:.1f} s "
            f"({_fmt(c['connections_per_s'])}/s); gateway RSS {c['rss_before_mib']} -> "
            f"{c['rss_after_mib']} MiB = {_fmt(c['kib_per_connection'], '.1f')} KiB/connection; "
            f"gateway CPU while they idle: {c['gateway_idle_cpu_percent']:.1f}%",
        ]
    lines += ["", "Goals:"]
    for entry in report["goals"].values():
        verdict = "PASS" if entry["pass"] else "FAIL"
        lines.append(f"  [{verdict}] {entry['target']}: {json.dumps(entry['value'])}")
    lines.append(f"\n({report['seconds']:.0f} s)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run (under a minute): 2 s phases, 500 connections",
    )
    parser.add_argument("--subscribers", type=int, default=100, help="subscribers (default 100)")
    parser.add_argument(
        "--connections",
        type=int,
        help="connections to hold on the gateway (default 5000; 500 with --quick)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="seconds of each max-rate and fixed-load phase (default 5; 2 --quick)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=64,
        help="messages outstanding until every subscriber has them (default 64)",
    )
    parser.add_argument(
        "--latency-load",
        type=float,
        default=10_000.0,
        help="deliveries/s offered in the latency phase (default 10000)",
    )
    parser.add_argument(
        "--brokers",
        default=",".join(BROKERS),
        help="comma-separated brokers to measure (default all three)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before each run, wait up to this many seconds for other programs to go idle "
        "(default 20; 3 with --quick)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the broker to CPU 0 and the load processes elsewhere",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the JSON results (default {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args(argv)
    if args.subscribers < 1 or args.window < 1:
        parser.error("--subscribers and --window must be at least 1")
    args.brokers = [name.strip() for name in args.brokers.split(",") if name.strip()]
    unknown = sorted(set(args.brokers) - set(BROKERS))
    if unknown:
        parser.error(f"unknown broker(s) {unknown}; choose from {', '.join(BROKERS)}")
    if args.window > 100:
        parser.error("--window must be at most 100 (AWS IoT's QoS 1 in-flight limit)")
    return args


@contextlib.contextmanager
def _brokers() -> Iterator[list[Broker]]:
    started: list[Broker] = []
    try:
        yield started
    finally:
        for broker in reversed(started):
            broker.stop()


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; the process exit status."""
    args = _parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the brokers and load processes are stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    load.raise_nofile_limit()
    quick = args.quick
    duration = args.duration if args.duration is not None else (2.0 if quick else 5.0)
    settings = Settings(
        subscribers=args.subscribers,
        connections=args.connections
        if args.connections is not None
        else (500 if quick else GOAL_CONNECTIONS),
        duration_s=duration,
        latency_duration_s=duration,
        warmup_s=0.3 if quick else 1.0,
        window=args.window,
        batch=16,
        pin=not args.no_pin and (os.cpu_count() or 1) >= 2,
        quiet_wait_s=args.quiet_wait if args.quiet_wait is not None else (3.0 if quick else 20.0),
        latency_load=args.latency_load,
    )
    qos_levels = [0, 1]
    started_at = time.monotonic()
    runs: dict[str, dict[int, dict[str, Any]] | None] = {}
    connections: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp, _brokers() as brokers:
            workdir = Path(tmp)
            candidates: list[Broker] = []
            if "tidings" in args.brokers or settings.connections > 0:
                gateway = start_gateway(workdir)
                brokers.append(gateway)
                print(
                    f"tidings gateway: pid {gateway.pid}, "
                    f"wss://localhost:{gateway.target.port}/mqtt (--publish-rate 0: AWS's "
                    "100 publishes/s/connection limit off)",
                    flush=True,
                )
                if settings.connections > 0:
                    print(f"holding {settings.connections} connections...", flush=True)
                    connections = run_connections(gateway, settings.connections, concurrency=100)
                if "tidings" in args.brokers:
                    candidates.append(gateway)
            if "amqtt" in args.brokers:
                amqtt = start_amqtt(workdir)
                brokers.append(amqtt)
                print(
                    f"amqtt: pid {amqtt.pid}, ws://127.0.0.1:{amqtt.target.port}/mqtt", flush=True
                )
                candidates.append(amqtt)
            if "mosquitto" in args.brokers:
                executable = shutil.which("mosquitto")
                if executable is None:
                    print("mosquitto: not installed", flush=True)
                    runs["mosquitto"] = None
                else:
                    mosquitto = start_mosquitto(workdir, executable)
                    brokers.append(mosquitto)
                    print(
                        f"mosquitto: pid {mosquitto.pid}, tcp://127.0.0.1:{mosquitto.target.port}",
                        flush=True,
                    )
                    candidates.append(mosquitto)
            for broker in candidates:
                by_qos: dict[int, dict[str, Any]] = {}
                runs[broker.name] = by_qos
                for qos in qos_levels:
                    print(f"{broker.name} QoS {qos}...", flush=True)
                    by_qos[qos] = run_fanout(broker, qos, settings)
    except BenchmarkError as exc:
        print(f"fanout benchmark failed: {exc}", file=sys.stderr)
        return 1
    runs = {name: runs[name] for name in BROKERS if name in runs}
    report = build_report(settings, runs, connections, qos_levels, time.monotonic() - started_at)
    show_report(report, args.output, render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
