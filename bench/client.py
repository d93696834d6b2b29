"""Client benchmark: catch-up after an outage, and the latency the Python client adds.

Both parts run against one local stack (``infra.local.stack.local_stack.LocalStack``) in
this process; the clients run in a second process (so the gateway, moto and the API do not
share their interpreter), driven through a pipe.

1. **Catch-up after a ``--changes`` (10,000) change outage.** A ``client_sdk.Tidings`` client
   subscribes to its ``users/me/todos``, receives one change written with ``PutItem`` (through
   the stream pump and the publisher function), notes its cursor and closes: it is offline.
   Then ``--changes`` changes of that channel are written *through the publisher path*:
   ``backend.publisher.Publisher`` in this process, with the real ``ChangeStore`` on moto
   (every change numbered and logged in DynamoDB transactions) and the real iot-data client
   publishing to the gateway, fed Lambda-shaped stream records in 100-record batches (PutItem
   via moto + the pump would take minutes; the write time is reported). The change log then
   holds them all (checked). The client reconnects (``Tidings.connect``, sign-in included)
   and subscribes with ``after=<cursor>``; it fetches the gap from the channels API
   (``GET .../changes``, 1,000 per page) and delivers every change once, in order. Reported:
   time from reconnect to caught up, and changes/s during the catch-up (from the
   ``subscribe`` call to the last change delivered); also the API alone (the same pages
   fetched back to back with the client's own signed API) to show what the client adds, and how long
   moto alone takes to answer one page's ``Query`` (raw HTTP, no botocore parsing).
2. **Steady-state callback overhead.** One Tidings client subscribed to ``public/scores``
   and two raw awsiotsdk MQTT 5 clients (same identity and credentials, own client ids)
   subscribed to the same topic, all in the client process. ``--messages`` publisher-shaped
   envelopes (``{"v": 1, "channel": ..., "seq": n, "epoch": 1, ...}``) are published straight
   to the gateway's iot-data endpoint at ``--rate``/s. Each message's receive time
   (``perf_counter_ns``) is taken in the raw clients' ``on_publish_received`` and in the
   Tidings application callback; overhead = Tidings - first raw client. The second raw
   client (subscribed after the Tidings client) shows how much of that difference is just
   the gateway's fan-out order; ``internal`` is the Tidings callback minus the moment its own
   transport handed the message over (queue hop, JSON parse, ordering).

Usage: ``.venv/bin/python bench/client.py [--quick] [--changes N] [--output FILE]``; writes
``bench/results/client.json``. Exits 0 when goals are missed, non-zero only when the
benchmark itself could not run (e.g. a change never delivered).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.e2e import (  # noqa: E402
    PASSWORD,
    REGION,
    add_users,
    exit_on_signal,
    local_stack,
    percentile,
    publisher_credential,
    rounded,
    stderr_to,
)
from bench.fanout import BenchmarkError, Worker  # noqa: E402
from bench.report import goal, show_report  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "client.json"
GOAL_CATCHUP_PER_S = 5000.0
GOAL_OVERHEAD_P50_MS = 1.0
CATCHUP_USER = "catchup"
OVERHEAD_USER = "overhead"
SCORES = "public/scores"


# ------------------------------------------------------------------------ the client process
class _Recorder:
    """What a Tidings application callback saw: seqs and their delivery times."""

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.times: list[int] = []
        self.changed = threading.Condition()

    def on_change(self, change: Any) -> None:
        now = time.perf_counter_ns()
        with self.changed:
            self.seqs.append(int(change["seq"]))
            self.times.append(now)
            self.changed.notify_all()

    def wait_for(self, seq: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not self.seqs or self.seqs[-1] < seq:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
        return True


def _connect(settings: dict[str, Any], user: str) -> Any:
    from client_sdk import ClientOptions, Password, Tidings

    options = ClientOptions(
        ca_file=settings["ca_file"],
        cognito_endpoint=settings["identity_url"],
        min_backoff_ms=200,
        max_backoff_ms=2000,
    )
    return Tidings.connect(settings["api_url"], Password(user, PASSWORD), options=options)


def _service(client: Any) -> Any:
    """The client's signed-in service (its credential source, signed API and topic prefix):
    private to the client, used here to measure against the same identity."""
    return client._core.service


def _raw_client(client: Any, name: str, inbox: list[tuple[int, bytes]]) -> Any:
    """A raw awsiotsdk MQTT 5 client as the Tidings client's identity; receipts → ``inbox``."""
    from awscrt import auth, mqtt5
    from awsiot import mqtt5_client_builder

    credentials = _service(client).credentials
    session = credentials.session
    connected = threading.Event()
    failure: list[Any] = []

    def fresh() -> Any:
        creds = credentials.get()
        return auth.AwsCredentials(
            creds.access_key_id, creds.secret_access_key, creds.session_token
        )

    append, now = inbox.append, time.perf_counter_ns

    def on_publish(data: Any) -> None:
        append((now(), data.publish_packet.payload))

    raw = mqtt5_client_builder.websockets_with_default_aws_signing(
        region=session.region,
        credentials_provider=auth.AwsCredentialsProvider.new_delegate(fresh),
        endpoint=session.iot_endpoint,
        port=session.iot_port,
        ca_filepath=client.options.ca_file,
        client_id=f"{session.identity_id}-{name}-{uuid.uuid4().hex[:6]}",
        on_publish_received=on_publish,
        on_lifecycle_connection_success=lambda _d: connected.set(),
        on_lifecycle_connection_failure=lambda d: (failure.append(d), connected.set()),
        session_behavior=mqtt5.ClientSessionBehaviorType.CLEAN,
        min_reconnect_delay_ms=60_000,
        enable_metrics_collection=False,
    )
    raw.start()
    if not connected.wait(30) or failure:
        raise BenchmarkError(f"raw client {name} did not connect: {failure!r}")
    topic = _service(client).topic_prefix + SCORES
    packet = mqtt5.SubscribePacket(
        subscriptions=[mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)]
    )
    codes = raw.subscribe(packet).result(30).reason_codes
    if any(int(code) >= 0x80 for code in codes):
        raise BenchmarkError(f"raw client {name}: SUBSCRIBE refused {codes}")
    return raw


def client_process(settings: dict[str, Any], pipe: Any) -> None:
    """The client side of both parts, one command at a time (see the module docstring)."""
    try:
        state: dict[str, Any] = {}
        pipe.send(("ready", {}))
        while True:
            command = pipe.recv()
            kind = command[0]
            if kind == "stop":
                with contextlib.suppress(Exception):
                    if "tidings" in state:
                        state["tidings"].close()
                for name in ("raw_a", "raw_b"):
                    with contextlib.suppress(Exception):
                        if name in state:
                            state[name].stop()
                pipe.send(("stopped", {}))
                return
            handler = {
                "live": _live,
                "catchup": _catchup,
                "overhead_setup": _overhead_setup,
                "overhead_collect": _overhead_collect,
            }[kind]
            pipe.send((kind, handler(settings, state, *command[1:])))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _live(settings: dict[str, Any], state: dict[str, Any], step: str) -> dict[str, Any]:
    """``open``: connect and subscribe; ``wait``: receive the first change, then go offline."""
    if step == "open":
        client = _connect(settings, CATCHUP_USER)
        recorder = _Recorder()
        subscription = client.subscribe("users/me/todos", recorder.on_change)
        state.update(live=client, live_recorder=recorder, live_subscription=subscription)
        return {"identity_id": client.identity_id, "cursor": subscription.cursor}
    client, recorder = state.pop("live"), state.pop("live_recorder")
    subscription = state.pop("live_subscription")
    if not recorder.wait_for(1, 60):
        raise BenchmarkError("the live change did not arrive within 60 s")
    cursor = subscription.cursor
    client.close()
    return {"cursor": cursor}


def _catchup(
    settings: dict[str, Any], state: dict[str, Any], cursor: int, head: int
) -> dict[str, Any]:
    """Reconnect, subscribe after ``cursor``, and time the way to ``head``."""
    recorder = _Recorder()
    started = time.perf_counter_ns()
    client = _connect(settings, CATCHUP_USER)
    connected = time.perf_counter_ns()
    try:
        subscribe_at = time.perf_counter_ns()
        client.subscribe("users/me/todos", recorder.on_change, after=cursor)
        subscribed = time.perf_counter_ns()
        if not recorder.wait_for(head, settings["catchup_timeout_s"]):
            got = recorder.seqs[-1] if recorder.seqs else cursor
            raise BenchmarkError(f"caught up only to seq {got} of {head}")
        caught_up = recorder.times[-1]
        expected = list(range(cursor + 1, head + 1))
        in_order = recorder.seqs == expected
        api_calls = client.stats["api_calls"]
        stats = dict(client.stats)
        # the API alone: the same pages, back to back, no client dispatch
        channel = f"users/{client.identity_id}/todos"
        api_started = time.perf_counter_ns()
        fetched, after = 0, cursor
        while after < head:
            page = _service(client).api.changes(channel, after, 1000)
            changes = page.get("changes") or []
            if not changes:
                break
            fetched += len(changes)
            after = int(changes[-1]["seq"])
        api_s = (time.perf_counter_ns() - api_started) / 1e9
    finally:
        client.close()
    count = head - cursor
    window_s = (caught_up - subscribe_at) / 1e9
    return {
        "changes": count,
        "delivered": len(recorder.seqs),
        "in_order_once": in_order,
        "connect_ms": round((connected - started) / 1e6, 1),
        "subscribe_call_ms": round((subscribed - subscribe_at) / 1e6, 1),
        "first_change_ms": round((recorder.times[0] - started) / 1e6, 1),
        "reconnect_to_caught_up_ms": round((caught_up - started) / 1e6, 1),
        "catchup_window_ms": round(window_s * 1000, 1),
        "catchup_changes_per_s": round(count / window_s, 0),
        "api_calls": api_calls,
        "client_stats": stats,
        "api_only_changes": fetched,
        "api_only_s": round(api_s, 3),
        "api_only_changes_per_s": round(fetched / api_s, 0) if api_s > 0 else None,
    }


def _overhead_setup(settings: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Connect raw A, the Tidings client, raw B (in that order) on ``public/scores``."""
    client = _connect(settings, OVERHEAD_USER)
    state["tidings"] = client
    head = _service(client).api.head(SCORES)
    raw_a: list[tuple[int, bytes]] = []
    raw_b: list[tuple[int, bytes]] = []
    transport: list[tuple[int, bytes]] = []
    state["raw_a"] = _raw_client(client, "rawA", raw_a)
    # the moment the Tidings transport hands a message to the client (wrapping, not changing)
    core = client._core  # the control loop the transport reports to (private)
    handed_over = core.on_message
    append, now = transport.append, time.perf_counter_ns

    def on_message(topic: str, payload: bytes) -> None:
        append((now(), payload))
        handed_over(topic, payload)

    core.on_message = on_message
    recorder = _Recorder()
    client.subscribe(SCORES, recorder.on_change)
    state["raw_b"] = _raw_client(client, "rawB", raw_b)
    state.update(recorder=recorder, raw_a_inbox=raw_a, raw_b_inbox=raw_b, transport_inbox=transport)
    topic_prefix = _service(client).topic_prefix
    return {"head": int(head["head"]), "epoch": int(head["epoch"]), "topic": topic_prefix}


def _by_seq(inbox: list[tuple[int, bytes]]) -> dict[int, int]:
    seen: dict[int, int] = {}
    for received, payload in inbox:
        seen.setdefault(int(json.loads(payload)["seq"]), received)
    return seen


def _overhead_collect(
    settings: dict[str, Any], state: dict[str, Any], first: int, last: int
) -> dict[str, Any]:
    """Wait for seqs ``first..last`` everywhere, then compare receive times per message."""
    recorder: _Recorder = state["recorder"]
    delivered = recorder.wait_for(last, 60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        len(state["raw_a_inbox"]) < last - first + 1 or len(state["raw_b_inbox"]) < last - first + 1
    ):
        time.sleep(0.05)
    tidings = dict(zip(recorder.seqs, recorder.times, strict=True))
    raw_a, raw_b = _by_seq(state["raw_a_inbox"]), _by_seq(state["raw_b_inbox"])
    handed = _by_seq(state["transport_inbox"])
    overhead, baseline, internal = [], [], []
    for seq in range(first, last + 1):
        if seq in tidings and seq in raw_a:
            overhead.append((tidings[seq] - raw_a[seq]) / 1e6)
        if seq in raw_b and seq in raw_a:
            baseline.append((raw_b[seq] - raw_a[seq]) / 1e6)
        if seq in tidings and seq in handed:
            internal.append((tidings[seq] - handed[seq]) / 1e6)
    seqs = [s for s in recorder.seqs if first <= s <= last]

    def summary(values: list[float]) -> dict[str, Any]:
        return {
            "count": len(values),
            "p50_ms": rounded(percentile(values, 50), 3),
            "p90_ms": rounded(percentile(values, 90), 3),
            "p99_ms": rounded(percentile(values, 99), 3),
            "mean_ms": rounded(statistics.fmean(values), 3) if values else None,
        }

    return {
        "messages": last - first + 1,
        "tidings_delivered": len(seqs),
        "tidings_in_order_once": seqs == list(range(first, last + 1)),
        "all_delivered": delivered,
        "raw_a_received": len(raw_a),
        "raw_b_received": len(raw_b),
        "overhead_vs_raw": summary(overhead),
        "raw_b_vs_raw_a": summary(baseline),
        "internal": summary(internal),
        "duplicates_dropped": state["tidings"].stats["duplicates"],
    }


# ------------------------------------------------------------------------- the writing side
def _put_todo(stack: Any, owner: str, n: int) -> None:
    stack.client("dynamodb").put_item(
        TableName=stack.tables["TodosTable"],
        Item={"owner": {"S": owner}, "id": {"S": f"live{n}"}, "n": {"N": str(n)}},
    )


def write_through_publisher(stack: Any, owner: str, count: int, batch: int = 100) -> dict:
    """``count`` changes of ``users/<owner>/todos`` through ``backend.publisher.Publisher``:
    Lambda-shaped stream records in ``batch``-record batches, numbered and logged in moto,
    published to the gateway. Returns timings; raises if a batch fails."""
    from botocore.credentials import Credentials

    from backend.change_store import ChangeStore, default_executor
    from backend.iot_publish import SignedPublishClient
    from backend.publisher import Publisher
    from backend.routes import load_routes
    from backend.settings import Settings

    env = stack.functions["PublisherFunction"].env
    settings = Settings.from_env(env)
    executor = default_executor(settings.publish_concurrency)
    store = ChangeStore(
        stack.client("dynamodb"),
        settings.sequence_table,
        settings.change_log_table,
        settings.retention_s,
        executor=executor,
    )
    iot = SignedPublishClient(
        f"https://localhost:{stack.iot_port}",
        REGION,
        Credentials(
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"]
        ),
        verify=stack.ca_file,
    )
    routes_file = Path(settings.routes_file)
    routes = load_routes(str(routes_file if routes_file.is_absolute() else ROOT / routes_file))
    publisher = Publisher(settings, routes, store, iot, executor=executor)
    table = stack.tables["TodosTable"]
    stream_arn = stack.client("dynamodb").describe_table(TableName=table)["Table"][
        "LatestStreamArn"
    ]
    started = time.perf_counter()
    batch_ms: list[float] = []
    published = 0
    for first in range(0, count, batch):
        records = []
        for n in range(first, min(count, first + batch)):
            image = {"owner": {"S": owner}, "id": {"S": f"item{n}"}, "n": {"N": str(n)}}
            records.append(
                {
                    "eventID": uuid.uuid4().hex,
                    "eventName": "INSERT",
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": REGION,
                    "dynamodb": {
                        "ApproximateCreationDateTime": int(time.time()),
                        "Keys": {"owner": image["owner"], "id": image["id"]},
                        "NewImage": image,
                        "SequenceNumber": f"{9 * 10**20 + n:021d}",
                        "SizeBytes": 100,
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    },
                    "eventSourceARN": stream_arn,
                }
            )
        batch_started = time.perf_counter()
        outcome = publisher.process(records)
        batch_ms.append((time.perf_counter() - batch_started) * 1000)
        if outcome.first_failure is not None:
            raise BenchmarkError(f"the publisher failed a batch: {outcome.errors[:1]}")
        published += outcome.published
    elapsed = time.perf_counter() - started
    executor.shutdown(wait=False)
    return {
        "changes": count,
        "published": published,
        "write_s": round(elapsed, 2),
        "changes_per_s": round(count / elapsed, 0),
        "batch100_p50_ms": rounded(percentile(batch_ms, 50), 1),
        "batch100_first10_median_ms": rounded(statistics.median(batch_ms[:10]), 1),
        "batch100_last10_median_ms": rounded(statistics.median(batch_ms[-10:]), 1),
        "how": "backend.publisher.Publisher in-process: ChangeStore on moto + iot-data publish",
    }


def publish_envelopes(stack: Any, topic: str, first: int, last: int, epoch: int, rate: float):
    """Publisher-shaped envelopes with seq ``first..last`` straight to the gateway, paced."""
    from botocore.credentials import Credentials

    from backend.iot_publish import SignedPublishClient

    key = publisher_credential(stack)
    iot = SignedPublishClient(
        f"https://localhost:{stack.iot_port}",
        REGION,
        Credentials(key["access_key"], key["secret_key"], key["token"]),
        verify=stack.ca_file,
    )
    channel = SCORES
    started = time.perf_counter()
    for seq in range(first, last + 1):
        due = started + (seq - first) / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        envelope = {
            "v": 1,
            "channel": channel,
            "seq": seq,
            "epoch": epoch,
            "id": uuid.uuid4().hex,
            "op": "modify",
            "keys": {"game": "bench", "player": f"p{seq % 100}"},
            "new": {"game": "bench", "player": f"p{seq % 100}", "score": seq},
            "at": int(time.time() * 1000),
        }
        iot.publish(topic=topic + channel, qos=1, payload=json.dumps(envelope).encode())
    return round(time.perf_counter() - started, 2)


def change_log_state(stack: Any, channel: str, after: int) -> tuple[int, int]:
    """The channel's head seq, and how many change-log entries it has after ``after``."""
    from backend.change_store import HEAD_PREFIX

    env = stack.functions["PublisherFunction"].env
    dynamodb = stack.client("dynamodb")
    item = dynamodb.get_item(
        TableName=env["TIDINGS_TABLE_SEQUENCETABLE"],
        Key={"pk": {"S": HEAD_PREFIX + channel}},
        ConsistentRead=True,
    ).get("Item")
    head = int(item["head"]["N"]) if item else 0
    logged = 0
    for page in dynamodb.get_paginator("query").paginate(
        TableName=env["TIDINGS_TABLE_CHANGELOGTABLE"],
        KeyConditionExpression="channel = :c AND seq > :after",
        ExpressionAttributeValues={":c": {"S": channel}, ":after": {"N": str(after)}},
        Select="COUNT",
        ConsistentRead=True,
    ):
        logged += page["Count"]
    return head, logged


def time_log_query(stack: Any, channel: str, after: int, repeats: int = 3) -> float:
    """Median ms for moto to answer the channels API's read of one page (``Query``, 1,000
    change-log entries, as ``ChangeStore.read`` asks), sent as a raw signed HTTP request and
    read as bytes (no botocore parsing): the emulator's own share of each catch-up page."""
    import http.client
    from urllib.parse import urlsplit

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    env = stack.functions["PublisherFunction"].env
    body = json.dumps(
        {
            "TableName": env["TIDINGS_TABLE_CHANGELOGTABLE"],
            "KeyConditionExpression": "channel = :channel AND seq > :after",
            "ExpressionAttributeValues": {
                ":channel": {"S": channel},
                ":after": {"N": str(after)},
            },
            "Limit": 1000,
            "ConsistentRead": True,
        }
    ).encode()
    url = stack.moto_url + "/"
    timings = []
    for _ in range(repeats):
        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers={
                "Content-Type": "application/x-amz-json-1.0",
                "X-Amz-Target": "DynamoDB_20120810.Query",
            },
        )
        developer = stack.developer
        credentials = Credentials(developer.access_key_id, developer.secret_access_key)
        SigV4Auth(credentials, "dynamodb", REGION).add_auth(request)
        parts = urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        started = time.perf_counter()
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        size = len(response.read())
        timings.append((time.perf_counter() - started) * 1000)
        connection.close()
        if response.status != 200 or size < 1000:
            raise BenchmarkError(f"moto answered the Query with HTTP {response.status}")
    return round(statistics.median(timings), 1)


# ------------------------------------------------------------------------------- the report
def build_report(settings: dict[str, Any], parts: dict[str, Any]) -> dict[str, Any]:
    """Headline numbers, goals, parameters and the details of both parts."""
    catchup, overhead = parts["catchup"], parts["overhead"]
    rate = catchup["catchup_changes_per_s"]
    p50 = overhead["overhead_vs_raw"]["p50_ms"]
    return {
        "catchup_changes_per_s": rate,
        "reconnect_to_caught_up_ms": catchup["reconnect_to_caught_up_ms"],
        "catchup_changes": catchup["changes"],
        "client_overhead_p50_ms": p50,
        "client_overhead_p99_ms": overhead["overhead_vs_raw"]["p99_ms"],
        "overhead_messages": overhead["messages"],
        "goals": {
            "catchup_changes_per_s": goal(f">= {GOAL_CATCHUP_PER_S:,.0f}", rate, rate >= 5000),
            "client_overhead_p50_ms": goal(
                f"<= {GOAL_OVERHEAD_P50_MS:g} ms", p50, None if p50 is None else p50 <= 1.0
            ),
        },
        "parameters": {
            "changes": settings["changes"],
            "messages": settings["messages"],
            "rate_per_s": settings["rate"],
            "fill_page": 1000,
            "quick": settings["quick"],
        },
        "writes": parts["writes"],
        "catchup": catchup,
        "overhead": overhead,
        "setup": parts["setup"],
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: Any, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def render_table(report: dict[str, Any]) -> str:
    """The printed summary."""
    c, w, o = report["catchup"], report["writes"], report["overhead"]
    lines = [
        f"catch-up after a {c['changes']:,}-change outage "
        f"(written through the publisher in {w['write_s']} s, {w['changes_per_s']:,.0f}/s;\n"
        f"   100-change batch: first ten {w['batch100_first10_median_ms']} ms, "
        f"last ten {w['batch100_last10_median_ms']} ms)",
        f"  reconnect (sign-in + MQTT connect)   {_fmt(c['connect_ms'])} ms",
        f"  reconnect → first change             {_fmt(c['first_change_ms'])} ms",
        f"  reconnect → caught up                {_fmt(c['reconnect_to_caught_up_ms'])} ms",
        f"  catch-up rate (subscribe → last)     {_fmt(c['catchup_changes_per_s'], ',.0f')} "
        f"changes/s ({c['api_calls']} API calls, once and in order: {c['in_order_once']})",
        f"  API alone (same pages back to back)  {_fmt(c['api_only_changes_per_s'], ',.0f')} "
        "changes/s",
        f"  of which moto answering one page     {_fmt(c['moto_query_1000_ms'])} ms "
        "(Query, up to 1,000 entries, raw HTTP)",
        "",
        f"callback latency added over raw awsiotsdk, {o['messages']} messages at "
        f"{report['parameters']['rate_per_s']:g}/s",
        f"  {'':28} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'n':>6}",
    ]
    for label, key in (
        ("Tidings - raw A", "overhead_vs_raw"),
        ("raw B - raw A (fan-out)", "raw_b_vs_raw_a"),
        ("Tidings internal", "internal"),
    ):
        s = o[key]
        lines.append(
            f"  {label:28} {_fmt(s['p50_ms'], '.3f'):>8} {_fmt(s['p90_ms'], '.3f'):>8} "
            f"{_fmt(s['p99_ms'], '.3f'):>8} {_fmt(s['mean_ms'], '.3f'):>8} {s['count']:>6}"
        )
    lines.append("")
    for name, entry in report["goals"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[entry["pass"]]
        lines.append(f"goal {name}: {entry['target']}, measured {_fmt(entry['value'])}: {verdict}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 changes, 300 messages")
    parser.add_argument("--changes", type=int, help="outage size (10,000; quick 2,000)")
    parser.add_argument("--messages", type=int, help="overhead messages (2,000; quick 300)")
    parser.add_argument("--rate", type=float, default=200.0, help="overhead publishes/s")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run both parts, print the table, write the JSON; the process exit status."""
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_signal)
    settings: dict[str, Any] = {
        "quick": args.quick,
        "changes": args.changes or (2000 if args.quick else 10_000),
        "messages": args.messages or (300 if args.quick else 2000),
        "rate": args.rate,
    }
    started = time.monotonic()
    parts: dict[str, Any] = {}
    worker: Worker | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="tidings-bench-client-") as tmp:
            state = Path(tmp)
            log_file = state / "stack.log"
            print(f"starting the local stack (its logs: {log_file})...", flush=True)
            with stderr_to(log_file), local_stack(state / "stack") as stack:
                stack_s = time.monotonic() - started
                add_users(stack, [CATCHUP_USER, OVERHEAD_USER])
                worker = Worker(
                    "clients",
                    client_process,
                    (
                        {
                            "ca_file": stack.ca_file,
                            "api_url": stack.api_url,
                            "identity_url": stack.identity_url,
                            "catchup_timeout_s": 120.0,
                        },
                    ),
                )
                worker.call(None, "ready", 60)
                live = worker.call(("live", "open"), "live", 60)
                owner = live["identity_id"]
                _put_todo(stack, owner, 0)
                cursor = worker.call(("live", "wait"), "live", 90)["cursor"]
                print(
                    f"client offline at cursor {cursor}; writing {settings['changes']:,} "
                    "changes through the publisher...",
                    flush=True,
                )
                parts["writes"] = write_through_publisher(stack, owner, settings["changes"])
                channel = f"users/{owner}/todos"
                head, logged = change_log_state(stack, channel, cursor)
                parts["writes"].update(head=head, logged_after_cursor=logged)
                if head - cursor != settings["changes"] or logged != settings["changes"]:
                    raise BenchmarkError(
                        f"the change log holds {logged} changes after {cursor} (head {head}), "
                        f"not {settings['changes']}"
                    )
                print(f"written in {parts['writes']['write_s']} s; reconnecting...", flush=True)
                timeout = 60 + settings["changes"] / 100
                parts["catchup"] = worker.call(("catchup", cursor, head), "catchup", timeout)
                parts["catchup"]["moto_query_1000_ms"] = time_log_query(stack, channel, cursor)
                print("overhead: connecting one Tidings and two raw clients...", flush=True)
                setup = worker.call(("overhead_setup",), "overhead_setup", 90)
                first = setup["head"] + 1
                last = setup["head"] + settings["messages"]
                publish_s = publish_envelopes(
                    stack, setup["topic"], first, last, setup["epoch"], settings["rate"]
                )
                parts["overhead"] = worker.call(
                    ("overhead_collect", first, last), "overhead_collect", 120
                )
                parts["overhead"]["publish_s"] = publish_s
                parts["setup"] = {"stack_start_s": round(stack_s, 1)}
                worker.stop()
                worker = None
    except BenchmarkError as exc:
        print(f"client benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if worker is not None:
            worker.stop()
    parts["setup"]["total_s"] = round(time.monotonic() - started, 1)
    report = build_report(settings, parts)
    show_report(report, args.output, render_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
