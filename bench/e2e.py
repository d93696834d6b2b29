"""End-to-end benchmark: DynamoDB write → every subscribed client, through the whole local path.

A write is a boto3 ``PutItem`` into the ScoresTable (moto); the stream pump reads it from the
table's stream and invokes the publisher function (a Lambda worker process), which numbers the
change, logs it and publishes it over iot-data to the IoT gateway; the gateway fans it out to
``--subscribers`` (default 100) MQTT 5 connections subscribed to ``public/scores``. Each write
carries ``time.time_ns()`` taken just before ``PutItem`` in its ``score`` attribute (the route
sends ``game``, ``player`` and ``score``), so every subscriber measures write → receive itself;
the envelope's ``at`` has only second resolution in moto and is not used.

Measured in one run, against one local stack (``infra.local.stack.local_stack.LocalStack``):

* **offered loads** of 10, 100 and 1,000 writes/s (``--rates``), each for ``--duration`` s
  (open loop: a write is due at ``start + i / rate``; ``--writers`` threads send them): p50/p99
  latency over every delivery, the writes actually sent, how long ``PutItem`` itself took
  (moto is a Python emulator: its time is not DynamoDB's), and the **sustained throughput** =
  writes that reached *every* subscriber, divided by the time from the first write to the
  last delivery;
* **gateway only**: the same subscribers, publishes sent straight to the gateway's iot-data
  endpoint at ``--gateway-rate`` (100/s) with the publisher's own HTTPS client
  (``backend.iot_publish.SignedPublishClient``) and publisher-shaped envelopes. The difference
  from the pipeline's numbers is the pipeline's own share (stream polling, the publisher).

Subscribers are real awsiotsdk MQTT 5 clients (``mqtt5_client_builder.
websockets_with_default_aws_signing``, SigV4 WebSocket, QoS 1), spread over ``--identities``
password users (default 10, so 10 connections per identity) who sign in through the local API
(``POST /v1/login``) and get their temporary credentials from the local Cognito identity service
(``client_sdk``'s credential source); each connection has its own client id. The stack runs in
this process (moto, gateway, API, identity service, stream pumps; functions in their own
worker processes); the writer and the subscribers run in two more processes, and the table
shows every process group's CPU use per phase, so the bottleneck is visible.

Usage: ``.venv/bin/python bench/e2e.py [--quick] [--output FILE]``; writes
``bench/results/e2e.json``. Exits 0 when goals are missed, non-zero only when the benchmark
itself could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.fanout import BenchmarkError, CpuMeter, Worker, wait_for_quiet  # noqa: E402
from bench.report import cpu_probe_ms, goal, show_report  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "e2e.json"
REGION = "us-east-1"
ACCOUNT = "123456789012"
STAGE = "dev"
PASSWORD = "bench-password-123"
CHANNEL = "public/scores"
TOPIC = f"tidings/{STAGE}/{CHANNEL}"
GOAL_P50_MS = 30.0
GOAL_P99_MS = 100.0
GOAL_RATE = 100


# ------------------------------------------------------------------------------ small helpers
def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0 to 100, nearest rank) of ``values``, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def rounded(value: float | None, digits: int = 1) -> float | None:
    """``round`` that lets None through."""
    return None if value is None else round(value, digits)


def exit_on_signal(signum: int, _frame: Any) -> None:
    """SIGTERM unwinds like Ctrl-C, so everything started is stopped on the way out."""
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's file descriptor 2 (and so its children's) to ``path`` meanwhile.

    The local stack's function workers log every batch as JSON to the stderr they inherit;
    the benchmark's table should not drown in it. The log stays in ``path``.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def local_stack(state_dir: Path) -> Iterator[Any]:
    """The whole local stack on free 127.0.0.1 ports, stopped on the way out."""
    from infra.local.stack.local_stack import LocalStack, StackConfig, freeze_process_heap

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    config = StackConfig(
        state_dir=state_dir,
        gateway_port=0,
        api_port=0,
        identity_port=0,
        moto_port=0,
        web_port=0,
        mqtt_port=0,
        credentials_port=0,
    )
    stack = LocalStack(config)
    stack.start()
    freeze_process_heap()  # this process owns the stack, as `tidings up` does
    try:
        yield stack
    finally:
        stack.stop()


def add_users(stack: Any, names: list[str]) -> None:
    """Password users in the stack's users table (as ``tidings users add`` does)."""
    from auth.passwords import hash_password
    from auth.store import UsersStore

    store = UsersStore(stack.client("dynamodb"), stack.tables["UsersTable"])
    hashed = hash_password(PASSWORD)
    for name in names:
        store.add_user(name, hashed, frozenset())


def publisher_credential(stack: Any) -> dict[str, str]:
    """Temporary credentials allowed to publish under the stage prefix (as the publisher is)."""
    from infra.local.awsauth.temporary_credentials import mint_temporary_credential

    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"arn:aws:iot:{REGION}:{ACCOUNT}:topic/tidings/{STAGE}/*",
            }
        ],
    }
    credential = mint_temporary_credential("bench-publisher/session", [[policy]])
    stack.credentials.put(credential)
    return {
        "access_key": credential.access_key_id,
        "secret_key": credential.secret_access_key,
        "token": credential.session_token or "",
    }


def lambda_worker_pids(stack_pid: int) -> list[int]:
    """The local Lambda runtime's worker processes (children of the stack's process)."""
    pids = []
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(stack_pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if "infra.local.functions.worker" in " ".join(child.cmdline()):
                    pids.append(child.pid)
    return pids


class GroupCpu:
    """CPU use of named groups of processes between two moments (% of one core)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.meter = CpuMeter(
            {f"{name}:{pid}": pid for name, pids in groups.items() for pid in pids}
        )
        self.names = list(groups)

    def percent(self) -> dict[str, float]:
        """Per group, and ``other`` (what the rest of the machine used meanwhile)."""
        used = self.meter.percent()
        result = {name: 0.0 for name in self.names}
        for key, value in used.items():
            if key != "other":
                result[key.split(":", 1)[0]] += value
        result = {name: round(value, 1) for name, value in result.items()}
        result["other"] = used["other"]
        return result


# --------------------------------------------------------------------- the subscriber process
def subscriber_process(settings: dict[str, Any], pipe: Any) -> None:
    """N awsiotsdk MQTT 5 connections on ``public/scores``; every receipt time-stamped.

    Commands: ``("count",)`` → total receipts; ``("take",)`` → the receipts since the last
    take, reduced to latencies and per-message counts; ``("stop",)``.
    """
    try:
        from awscrt import auth, mqtt5
        from awsiot import mqtt5_client_builder

        from client_sdk._http import ssl_context
        from client_sdk._session import CredentialSource

        context = ssl_context(settings["ca_file"])
        started = time.monotonic()
        sources = []
        for name in settings["users"]:
            source = CredentialSource(
                settings["api_url"],
                {"method": "password", "username": name, "password": PASSWORD},
                context=context,
                cognito_endpoint=settings["identity_url"],
            )
            source.get()
            sources.append(source)
        signin_s = time.monotonic() - started

        inboxes: list[list[tuple[int, bytes]]] = []
        clients: list[Any] = []
        connected = threading.Semaphore(0)
        failures: list[str] = []

        def make(index: int) -> Any:
            source = sources[index % len(sources)]
            inbox: list[tuple[int, bytes]] = []
            inboxes.append(inbox)
            append = inbox.append
            now = time.time_ns

            def on_publish(data: Any) -> None:
                append((now(), data.publish_packet.payload))

            def fresh(source: Any = source) -> Any:
                creds = source.get()
                return auth.AwsCredentials(
                    creds.access_key_id, creds.secret_access_key, creds.session_token
                )

            def on_failure(data: Any) -> None:
                failures.append(repr(getattr(data, "exception", data)))
                connected.release()

            session = source.session
            return mqtt5_client_builder.websockets_with_default_aws_signing(
                region=session.region,
                credentials_provider=auth.AwsCredentialsProvider.new_delegate(fresh),
                endpoint=session.iot_endpoint,
                port=session.iot_port,
                ca_filepath=settings["ca_file"],
                client_id=f"{session.identity_id}-bench{index}-{uuid.uuid4().hex[:6]}",
                on_publish_received=on_publish,
                on_lifecycle_connection_success=lambda _d: connected.release(),
                on_lifecycle_connection_failure=on_failure,
                session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
                min_reconnect_delay_ms=60_000,
                enable_metrics_collection=False,
            )

        started = time.monotonic()
        for index in range(settings["subscribers"]):
            client = make(index)
            clients.append(client)
            client.start()
        for _ in clients:
            if not connected.acquire(timeout=60):
                raise BenchmarkError("subscribers did not connect within 60 s")
        if failures:
            raise BenchmarkError(f"{len(failures)} subscribers failed to connect: {failures[0]}")
        packet = mqtt5.SubscribePacket(
            subscriptions=[mqtt5.Subscription(topic_filter=TOPIC, qos=mqtt5.QoS.AT_LEAST_ONCE)]
        )
        subacks = [client.subscribe(packet) for client in clients]
        for suback in subacks:
            codes = suback.result(30).reason_codes
            if any(int(code) >= 0x80 for code in codes):
                raise BenchmarkError(f"SUBSCRIBE {TOPIC} refused: {codes}")
        pipe.send(
            (
                "ready",
                {
                    "signin_s": round(signin_s, 2),
                    "connect_s": round(time.monotonic() - started, 2),
                    "identities": len(sources),
                },
            )
        )
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                break
            if command[0] == "count":
                pipe.send(("count", {"receipts": sum(len(inbox) for inbox in inboxes)}))
            elif command[0] == "take":
                taken = []
                for inbox in inboxes:
                    count = len(inbox)
                    taken.append(inbox[:count])
                    del inbox[:count]
                pipe.send(("taken", _reduce(taken)))
        for client in clients:
            client.stop()
        pipe.send(("stopped", {}))
    except BaseException as exc:  # report to the driver instead of dying silently
        with contextlib.suppress(Exception):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _reduce(per_client: list[list[tuple[int, bytes]]]) -> dict[str, Any]:
    """Receipts → latencies (ms, every delivery) and, per write, receivers and last receipt."""
    latencies: list[float] = []
    per_message: dict[int, list[int]] = {}
    malformed = 0
    for receipts in per_client:
        for received_ns, payload in receipts:
            try:
                sent_ns = int(json.loads(payload)["new"]["score"])
            except (ValueError, KeyError, TypeError):
                malformed += 1
                continue
            latencies.append((received_ns - sent_ns) / 1e6)
            entry = per_message.setdefault(sent_ns, [0, 0])
            entry[0] += 1
            entry[1] = max(entry[1], received_ns)
    return {"latencies_ms": latencies, "per_message": per_message, "malformed": malformed}


# ------------------------------------------------------------------------- the writer process
def writer_process(settings: dict[str, Any], pipe: Any) -> None:
    """Writes on a schedule: ``("put", rate, duration_s)`` PutItems into the ScoresTable,
    ``("publish", rate, duration_s)`` iot-data publishes straight to the gateway."""
    try:
        import boto3
        from botocore.config import Config
        from botocore.credentials import Credentials

        from backend.iot_publish import SignedPublishClient

        workers = settings["writers"]
        dynamodb = boto3.session.Session(
            region_name=REGION,
            aws_access_key_id=settings["developer_key"][0],
            aws_secret_access_key=settings["developer_key"][1],
        ).client(
            "dynamodb",
            endpoint_url=settings["moto_url"],
            config=Config(max_pool_connections=workers, retries={"max_attempts": 1}),
        )
        key = settings["publisher"]
        iot = SignedPublishClient(
            f"https://localhost:{settings['iot_port']}",
            REGION,
            Credentials(key["access_key"], key["secret_key"], key["token"]),
            verify=settings["ca_file"],
            pool_size=workers,
        )
        table = settings["table"]
        seq = [0]

        def put(index: int, sent_ns: int) -> None:
            dynamodb.put_item(
                TableName=table,
                Item={
                    "game": {"S": "bench"},
                    "player": {"S": f"p{index % 1000}"},
                    "score": {"N": str(sent_ns)},
                },
            )

        def publish(index: int, sent_ns: int) -> None:
            envelope = {
                "v": 1,
                "channel": CHANNEL,
                "seq": index + 1,
                "epoch": 1,
                "id": uuid.uuid4().hex,
                "op": "modify",
                "keys": {"game": "bench", "player": f"p{index % 1000}"},
                "new": {"game": "bench", "player": f"p{index % 1000}", "score": sent_ns},
                "at": sent_ns // 1_000_000,
            }
            iot.publish(topic=TOPIC, qos=1, payload=json.dumps(envelope).encode())

        pipe.send(("ready", {}))
        while True:
            command = pipe.recv()
            if command[0] == "stop":
                pipe.send(("stopped", {}))
                return
            kind, rate, duration_s = command
            action = put if kind == "put" else publish
            pipe.send(("done", run_schedule(action, rate, duration_s, workers, seq)))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def run_schedule(
    action: Any, rate: float, duration_s: float, workers: int, counter: list[int]
) -> dict[str, Any]:
    """Call ``action(index, sent_ns)`` at ``rate``/s for ``duration_s`` on ``workers`` threads.

    Open loop: call ``i`` is due at ``start + i / rate``; a thread takes the next due call,
    sleeps until it is due, and makes it; calls not started by the end are not made (and a
    late call is recorded with its lateness).
    """
    lock = threading.Lock()
    records: list[tuple[int, int, int]] = []  # sent_ns, done_ns, late_ns
    errors: list[str] = []
    total = int(rate * duration_s)
    start_ns = time.time_ns() + 20_000_000
    end_ns = start_ns + int(duration_s * 1e9)
    next_index = [0]

    def loop() -> None:
        while True:
            with lock:
                position = next_index[0]
                next_index[0] += 1
            if position >= total:
                return
            due_ns = start_ns + int(position * 1e9 / rate)
            delay = (due_ns - time.time_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            sent_ns = time.time_ns()
            if sent_ns > end_ns:
                return
            with lock:
                index = counter[0]
                counter[0] += 1
            try:
                action(index, sent_ns)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            done_ns = time.time_ns()
            records.append((sent_ns, done_ns, sent_ns - due_ns))

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"records": records, "errors": errors, "due": total, "start_ns": start_ns}


# -------------------------------------------------------------------------------- the phases
def wait_delivered(subscribers: Worker, expected: int, max_wait_s: float, idle_s: float) -> float:
    """Wait until ``expected`` receipts arrived, or nothing new came for ``idle_s``, or
    ``max_wait_s`` passed; returns the seconds waited."""
    started = time.monotonic()
    last, last_change = -1, started
    while True:
        count = subscribers.call(("count",), "count", 30)["receipts"]
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        if count >= expected or now - last_change >= idle_s or now - started >= max_wait_s:
            return now - started
        time.sleep(0.1)


def run_phase(
    kind: str,
    rate: float,
    duration_s: float,
    writer: Worker,
    subscribers: Worker,
    cpu_groups: dict[str, list[int]],
    settings: dict[str, Any],
) -> dict[str, Any]:
    """One offered load: write on schedule, wait for delivery, reduce to the table's row."""
    other_before = wait_for_quiet(settings["quiet_wait_s"])
    subscribers.call(("take",), "taken", 60)  # start from an empty inbox
    cpu = GroupCpu(cpu_groups)
    wall = time.monotonic()
    written = writer.call((kind, rate, duration_s), "done", duration_s + 120)
    records = written["records"]
    n_subscribers = settings["subscribers"]
    drain_s = wait_delivered(
        subscribers,
        len(records) * n_subscribers,
        max_wait_s=settings["max_drain_s"],
        idle_s=settings["idle_s"],
    )
    elapsed = time.monotonic() - wall
    cpu_percent = cpu.percent()
    taken = subscribers.call(("take",), "taken", 120)
    latencies = taken["latencies_ms"]
    per_message = taken["per_message"]
    sent = sorted(r[0] for r in records)
    call_ms = [(done - sent_ns) / 1e6 for sent_ns, done, _ in records]
    late_ms = [late / 1e6 for *_, late in records]
    complete = [v[1] for k, v in per_message.items() if v[0] >= n_subscribers]
    sustained = None
    if sent and complete:
        window_s = (max(complete) - sent[0]) / 1e9
        sustained = len(complete) / window_s if window_s > 0 else None
    send_window_s = (sent[-1] - sent[0]) / 1e9 if len(sent) > 1 else duration_s
    expected = len(records) * n_subscribers
    return {
        "kind": kind,
        "offered_per_s": rate,
        "duration_s": duration_s,
        "due": written["due"],
        "written": len(records),
        "write_errors": len(written["errors"]),
        "first_error": written["errors"][0] if written["errors"] else None,
        "achieved_writes_per_s": rounded(len(records) / max(send_window_s, 1e-9), 1),
        "call_p50_ms": rounded(percentile(call_ms, 50), 2),
        "call_p99_ms": rounded(percentile(call_ms, 99), 2),
        "late_p99_ms": rounded(percentile(late_ms, 99), 1),
        "deliveries": len(latencies),
        "expected_deliveries": expected,
        "undelivered": max(0, expected - len(latencies)),
        "delivered_to_all": len(complete),
        "p50_ms": rounded(percentile(latencies, 50), 2),
        "p90_ms": rounded(percentile(latencies, 90), 2),
        "p99_ms": rounded(percentile(latencies, 99), 2),
        "max_ms": rounded(max(latencies) if latencies else None, 1),
        "mean_ms": rounded(statistics.fmean(latencies) if latencies else None, 2),
        "sustained_writes_per_s": rounded(sustained, 1),
        "drain_s": round(drain_s, 2),
        "phase_s": round(elapsed, 2),
        "malformed": taken["malformed"],
        "cpu_percent": cpu_percent,
        "other_cpu_before_percent": other_before,
    }


# ------------------------------------------------------------------------------- the report
def build_report(
    settings: dict[str, Any], levels: list[dict[str, Any]], gateway: dict[str, Any], extra: dict
) -> dict[str, Any]:
    """Headline numbers, goals, parameters and the per-rate table."""
    at_100 = next((level for level in levels if level["offered_per_s"] == GOAL_RATE), None)
    p50 = at_100["p50_ms"] if at_100 else None
    p99 = at_100["p99_ms"] if at_100 else None
    sustained = [lv["sustained_writes_per_s"] for lv in levels if lv["sustained_writes_per_s"]]
    return {
        "p50_ms_at_100": p50,
        "p99_ms_at_100": p99,
        "gateway_p50_ms": gateway["p50_ms"],
        "gateway_p99_ms": gateway["p99_ms"],
        "max_sustained_writes_per_s": max(sustained) if sustained else None,
        "putitem_p50_ms_at_100": at_100["call_p50_ms"] if at_100 else None,
        "pipeline_p50_ms_at_100": (
            round(p50 - gateway["p50_ms"], 2) if p50 is not None and gateway["p50_ms"] else None
        ),
        "goals": {
            "p50_at_100_writes_per_s": goal(
                f"<= {GOAL_P50_MS:g} ms", p50, None if p50 is None else p50 <= GOAL_P50_MS
            ),
            "p99_at_100_writes_per_s": goal(
                f"<= {GOAL_P99_MS:g} ms", p99, None if p99 is None else p99 <= GOAL_P99_MS
            ),
        },
        "parameters": {
            "subscribers": settings["subscribers"],
            "identities": settings["identities"],
            "subscriber_client": "awsiotsdk MQTT 5 (websockets_with_default_aws_signing), QoS 1",
            "credentials": "POST /v1/login + GetCredentialsForIdentity (local identity service)",
            "channel": CHANNEL,
            "rates_per_s": settings["rates"],
            "duration_s": settings["duration_s"],
            "warmup_s": settings["warmup_s"],
            "gateway_rate_per_s": settings["gateway_rate"],
            "writers": settings["writers"],
            "max_drain_s": settings["max_drain_s"],
            "quiet_wait_s": settings["quiet_wait_s"],
            "quick": settings["quick"],
        },
        "levels": levels,
        "gateway_only": gateway,
        "setup": extra,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: Any, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """The printed summary."""
    p = report["parameters"]
    lines = [
        f"write → receive, {p['subscribers']} subscribers ({p['identities']} identities), "
        f"{p['duration_s']:g} s per level",
        "",
        f"{'offered/s':>9} {'sent/s':>7} {'PutItem p50/p99 ms':>19} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'all-subs/s':>10} {'lost':>6}  "
        "CPU% stack/lambda/writer/subs/other",
    ]
    rows = [*report["levels"], report["gateway_only"]]
    for row in rows:
        c = row["cpu_percent"]
        label = (
            f"{row['offered_per_s']:g}" if row["kind"] == "put" else f"gw {row['offered_per_s']:g}"
        )
        lines.append(
            f"{label:>9} {_fmt(row['achieved_writes_per_s']):>7} "
            f"{_fmt(row['call_p50_ms']) + ' / ' + _fmt(row['call_p99_ms']):>19} "
            f"{_fmt(row['p50_ms']):>8} {_fmt(row['p99_ms']):>8} {_fmt(row['max_ms'], ',.0f'):>8} "
            f"{_fmt(row['sustained_writes_per_s']):>10} {row['undelivered']:>6}  "
            f"{c.get('stack', 0):.0f}/{c.get('lambda', 0):.0f}/{c.get('writer', 0):.0f}/"
            f"{c.get('subscribers', 0):.0f}/{c.get('other', 0):.0f}"
        )
    lines.append(
        "(gw = iot-data publish straight to the gateway: its 'PutItem' column is the Publish call)"
    )
    lines.append("")
    for name, entry in report["goals"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[entry["pass"]]
        lines.append(f"goal {name}: {entry['target']}, measured {_fmt(entry['value'])}: {verdict}")
    warm = report["setup"].get("warmup")
    if warm:
        lines.append(
            f"warm-up (cold start included, not in the levels): {warm['written']} writes, "
            f"p50 {_fmt(warm['p50_ms'])} ms, max {_fmt(warm['max_ms'])} ms"
        )
    lines.append(
        f"max sustained: {_fmt(report['max_sustained_writes_per_s'])} writes/s delivered to all; "
        f"gateway-only p50 {_fmt(report['gateway_p50_ms'], '.2f')} ms"
    )
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer subscribers, 3 s levels")
    parser.add_argument("--subscribers", type=int, help="MQTT connections (100; quick 20)")
    parser.add_argument("--identities", type=int, help="users they sign in as (10; quick 4)")
    parser.add_argument("--rates", help="offered writes/s, comma-separated (10,100,1000)")
    parser.add_argument("--duration", type=float, help="seconds per level (8; quick 3)")
    parser.add_argument("--gateway-rate", type=float, default=100.0, help="gateway-only rate")
    parser.add_argument("--writers", type=int, default=32, help="writer threads")
    parser.add_argument("--max-drain", type=float, help="max wait for deliveries (30; quick 10)")
    parser.add_argument(
        "--quiet-wait", type=float, help="wait up to S s for other programs to idle (10; quick 2)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--log-file", type=Path, help="keep the stack's log there")
    parser.add_argument(
        "--warmup",
        type=float,
        help="seconds at 10 writes/s before the levels (3; quick 1; 0: none)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; the process exit status."""
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    quick = args.quick
    subscribers_n = args.subscribers or (20 if quick else 100)
    settings: dict[str, Any] = {
        "quick": quick,
        "subscribers": subscribers_n,
        "identities": max(1, min(subscribers_n, args.identities or (4 if quick else 10))),
        "rates": [float(r) for r in (args.rates or "10,100,1000").split(",")],
        "duration_s": args.duration or (3.0 if quick else 8.0),
        "warmup_s": args.warmup if args.warmup is not None else (1.0 if quick else 3.0),
        "gateway_rate": args.gateway_rate,
        "writers": args.writers,
        "max_drain_s": args.max_drain or (10.0 if quick else 30.0),
        "idle_s": 3.0,
        "quiet_wait_s": args.quiet_wait
        if args.quiet_wait is not None
        else (2.0 if quick else 10.0),
    }
    settings["rates"] = [int(r) if r.is_integer() else r for r in settings["rates"]]
    probe_start = cpu_probe_ms()
    started = time.monotonic()
    workers: list[Worker] = []
    try:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-e2e-") as tmp:
            state = Path(tmp)
            log_file = args.log_file or state / "stack.log"
            print(f"starting the local stack (its logs: {log_file})...", flush=True)
            with stderr_to(log_file), local_stack(state / "stack") as stack:
                stack_s = time.monotonic() - started
                users = [f"bench{i}" for i in range(settings["identities"])]
                add_users(stack, users)
                common = {
                    "ca_file": stack.ca_file,
                    "api_url": stack.api_url,
                    "identity_url": stack.identity_url,
                    "iot_port": stack.iot_port,
                    "moto_url": stack.moto_url,
                    "developer_key": [
                        stack.developer.access_key_id,
                        stack.developer.secret_access_key,
                    ],
                    "table": stack.tables["ScoresTable"],
                    "users": users,
                    "subscribers": subscribers_n,
                    "writers": settings["writers"],
                    "publisher": publisher_credential(stack),
                }
                print(
                    f"stack up in {stack_s:.1f} s; connecting {subscribers_n} subscribers as "
                    f"{len(users)} identities...",
                    flush=True,
                )
                subscribers = Worker("subscribers", subscriber_process, (common,))
                workers.append(subscribers)
                ready = subscribers.call(None, "ready", 180)
                writer = Worker("writer", writer_process, (common,))
                workers.append(writer)
                writer.call(None, "ready", 60)
                print(
                    f"signed in {ready['identities']} identities in {ready['signin_s']} s, "
                    f"{subscribers_n} connections subscribed in {ready['connect_s']} s",
                    flush=True,
                )
                groups = {
                    "stack": [os.getpid()],
                    "lambda": lambda_worker_pids(os.getpid()),
                    "writer": [writer.pid],
                    "subscribers": [subscribers.pid],
                }
                warmup = None
                if settings["warmup_s"] > 0:
                    # cold Lambda workers, first connections and moto's first calls: measured,
                    # reported on their own, kept out of the levels
                    print(f"warming up: 10 writes/s for {settings['warmup_s']:g} s...", flush=True)
                    groups["lambda"] = lambda_worker_pids(os.getpid())
                    warmup = run_phase(
                        "put", 10, settings["warmup_s"], writer, subscribers, groups, settings
                    )
                levels = []
                for rate in settings["rates"]:
                    print(
                        f"offered {rate} writes/s for {settings['duration_s']:g} s...", flush=True
                    )
                    groups["lambda"] = lambda_worker_pids(os.getpid())
                    levels.append(
                        run_phase(
                            "put",
                            rate,
                            settings["duration_s"],
                            writer,
                            subscribers,
                            groups,
                            settings,
                        )
                    )
                print(f"gateway only: {settings['gateway_rate']:g} publishes/s...", flush=True)
                gateway = run_phase(
                    "publish",
                    settings["gateway_rate"],
                    settings["duration_s"],
                    writer,
                    subscribers,
                    groups,
                    settings,
                )
                extra = {
                    "warmup": None
                    if warmup is None
                    else {
                        key: warmup[key]
                        for key in ("written", "p50_ms", "p99_ms", "max_ms", "undelivered")
                    },
                    "stack_start_s": round(stack_s, 1),
                    "signin_s": ready["signin_s"],
                    "subscribe_s": ready["connect_s"],
                    "lambda_workers": len(groups["lambda"]),
                    "total_s": None,
                }
                for worker in reversed(workers):
                    worker.stop()
                workers.clear()
    except BenchmarkError as exc:
        print(f"e2e benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for worker in reversed(workers):
            worker.stop()
    extra["total_s"] = round(time.monotonic() - started, 1)
    report = build_report(settings, levels, gateway, extra)
    report["cpu_probe_start_ms"] = probe_start
    show_report(report, args.output, render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
