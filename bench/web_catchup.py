"""The web client in Chromium against one local stack: catch-up rate and per-change overhead,
with the Python client's catch-up of the same change log measured in the same run.

What ``bench/web_client.py`` calls (``measure``); it runs, in order:

1. **The change log.** One local stack (``bench.e2e.local_stack``, free ports) and two
   password users. The catch-up user's ``users/<id>/todos`` gets ``changes`` (10,000)
   changes through the whole path: boto3 ``PutItem`` → moto's stream → stream pump →
   publisher function, timed (about 65-90 s on a 2-core machine). With ``putitem_sample`` below
   ``changes`` only that many go that way and the rest through
   ``bench.client.write_through_publisher`` (``backend.publisher.Publisher`` in this process:
   the real ``ChangeStore`` on moto numbers and logs each change, the real iot-data client
   publishes it). Either way the change log the API serves is the publisher's own. The
   channel head and the number of logged entries are checked to be ``changes``.
2. **Catch-up, side by side**, ``runs`` (3) times, alternating: a new Chromium page signs
   in (``Tidings.connect``, so the push connection is up), then times, with
   ``performance.now()`` in the page, ``subscribe(channel, cb, {after: 0})`` until the
   callback has seen the last seq; then the Python client (``client_sdk.Tidings`` in its own
   process, ``bench.client.client_process``) does the same. Both check that every change
   arrived once, in order. The page then reads the same pages with the client's own signed
   API (``client._api.changes``), back to back and with ``PARALLEL_READS`` in flight: the
   API's rate as the browser sees it.
3. **Overhead.** A new page, cross-origin isolated (5 µs ``performance.now()``), whose
   ``WebSocket`` is a subclass that notes ``performance.now()`` and the frame in a
   ``message`` listener added in its constructor (so before the client's ``onmessage``); the
   second user subscribes to its todos and ``live`` (500) changes are written with
   ``PutItem`` at ``live_rate`` (25/s). Per change: the application callback's
   ``performance.now()`` minus the arrival of the frame that carried it (matched by ``seq``,
   read from the frames after the run). That is the client's own work per pushed change in
   the page before the application sees it: MQTT decoding, JSON parsing, ordering, delivery
   (the PUBACK is sent after the callback returns).

Chromium is ``tests.support.browser.chromium`` (Debian's build, trusting the stack's CA).
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.client import (
    CATCHUP_USER,
    change_log_state,
    client_process,
    time_log_query,
    write_through_publisher,
)
from bench.e2e import PASSWORD, add_users, local_stack, percentile, rounded, stderr_to
from bench.fanout import BenchmarkError, Worker

LIVE_USER = "weblive"
ISOLATION_HEADERS = {
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-embedder-policy": "require-corp",
}
PARALLEL_READS = 3  # pages in flight in the "API, parallel" reading
CHANNEL = "users/me/todos"

_CONNECT = """
async ({ apiUrl, username, password, options, timed }) => {
  const { Tidings } = await import("/client/index.js");
  if (timed) {
    window.frames_in = [];
    const frames = window.frames_in;
    class TimedWebSocket extends WebSocket {
      constructor(...args) {
        super(...args);
        this.addEventListener("message", (event) => frames.push([performance.now(), event.data]));
      }
    }
    options = { ...options, WebSocket: TimedWebSocket };
  }
  const credentials = { method: "password", username, password };
  window.client = await Tidings.connect(apiUrl, credentials, options);
  return window.client.identityId;
}
"""

_CATCHUP = """
async ({ count, timeoutMs }) => {
  const client = window.client;
  let seen = 0, last = 0, wrong = null, finishedAt = null, firstAt = null;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const onChange = (change) => {
    if (firstAt === null) firstAt = performance.now();
    seen += 1;
    if (change.seq !== last + 1 && wrong === null) wrong = { after: last, got: change.seq };
    last = change.seq;
    if (seen === count) { finishedAt = performance.now(); finish(); }
  };
  const started = performance.now();
  const sub = await client.subscribe("users/me/todos", onChange, { after: 0 });
  const subscribed = performance.now();
  await Promise.race([finished, new Promise((r) => setTimeout(r, timeoutMs))]);
  await new Promise((r) => setTimeout(r, 300)); // a duplicate would show up now
  return {
    seen, last, wrong, stats: { ...client.stats }, channel: sub.channel,
    subscribe_call_ms: subscribed - started,
    first_change_ms: firstAt === null ? null : firstAt - started,
    window_ms: finishedAt === null ? null : finishedAt - started,
  };
}
"""

_API_READS = """
async ({ channel, count, parallel }) => {
  const client = window.client;
  // the API alone: the same pages, back to back, with the client's own signed API
  const apiStarted = performance.now();
  let fetched = 0, after = 0, pages = 0;
  while (after < count) {
    const page = await client._api.changes(channel, after, { limit: 1000 });
    const changes = page.changes ?? [];
    if (changes.length === 0) break;
    fetched += changes.length;
    pages += 1;
    after = changes[changes.length - 1].seq;
  }
  const apiMs = performance.now() - apiStarted;
  // the API with `parallel` reads in flight (seqs are dense, so pages start at known seqs)
  const starts = [];
  for (let a = 0; a < count; a += 1000) starts.push(a);
  let parallelFetched = 0;
  const parallelStarted = performance.now();
  const reader = async () => {
    while (starts.length > 0) {
      const page = await client._api.changes(channel, starts.shift(), { limit: 1000 });
      parallelFetched += (page.changes ?? []).length;
    }
  };
  await Promise.all(Array.from({ length: parallel }, reader));
  const parallelMs = performance.now() - parallelStarted;
  return {
    fetched, pages, api_only_ms: apiMs,
    parallel_fetched: parallelFetched, parallel_ms: parallelMs,
  };
}
"""

_LIVE_SUBSCRIBE = """
async () => {
  window.delivered = [];
  const delivered = window.delivered;
  const sub = await window.client.subscribe("users/me/todos", (change) => {
    delivered.push([performance.now(), change.seq]);
  });
  window.frames_in.length = 0;
  return { channel: sub.channel, cursor: sub.cursor };
}
"""

_LIVE_COLLECT = """
() => {
  const decoder = new TextDecoder("latin1");
  const arrivals = {};
  for (const [at, data] of window.frames_in) {
    const text = decoder.decode(data);
    for (const match of text.matchAll(/"seq"\\s*:\\s*(\\d+)/g)) arrivals[match[1]] ??= at;
  }
  const out = [];
  for (const [at, seq] of window.delivered) out.push([seq, at, arrivals[seq] ?? null]);
  return { frames: window.frames_in.length, delivered: out, stats: { ...window.client.stats } };
}
"""


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_ms": rounded(percentile(values, 50), 3),
        "p90_ms": rounded(percentile(values, 90), 3),
        "p99_ms": rounded(percentile(values, 99), 3),
        "max_ms": rounded(max(values), 3) if values else None,
        "mean_ms": rounded(statistics.fmean(values), 3) if values else None,
    }


def _cross_origin_isolate(page: Any, url: str) -> None:
    """Serve ``url`` (the stack's plain-HTTP web site on 127.0.0.1) to ``page`` with COOP
    ``same-origin`` and COEP ``require-corp`` added: the page is then cross-origin isolated,
    and ``performance.now()`` has 5 µs resolution instead of 100 µs."""

    def isolate(route: Any) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, headers={**answer.headers, **ISOLATION_HEADERS})

    page.route(url, isolate)


def _new_page(browser: Any, stack: Any, isolated: bool = False) -> tuple[Any, Any, list[str]]:
    from tests.support.browser import page_errors

    context = browser.new_context()
    page = context.new_page()
    errors = page_errors(page)
    url = stack.web_url + "sandbox.html"
    if isolated:
        # a page Playwright serves has no address space of its own: Chromium then treats it
        # as public and asks before it reaches the stack on 127.0.0.1; this grants it
        context.grant_permissions(["local-network-access"])
        _cross_origin_isolate(page, url)
    page.goto(url)
    if isolated and not page.evaluate("() => globalThis.crossOriginIsolated"):
        raise BenchmarkError("the overhead page is not cross-origin isolated")
    return context, page, errors


def _connect_page(page: Any, stack: Any, user: str, timed: bool = False) -> str:
    options = {"cognitoEndpoint": stack.identity_url, "minBackoffMs": 200, "maxBackoffMs": 2000}
    return str(
        page.evaluate(
            _CONNECT,
            {
                "apiUrl": stack.api_url,
                "username": user,
                "password": PASSWORD,
                "options": options,
                "timed": timed,
            },
        )
    )


def _close_page(context: Any, page: Any) -> None:
    with contextlib.suppress(Exception):
        page.evaluate("async () => { await window.client?.close(); }")
    with contextlib.suppress(Exception):
        context.close()


def _profile_top(profile: dict[str, Any], top: int = 15) -> dict[str, Any]:
    """Self time per function (name, file:line) of a CDP ``Profiler.stop`` profile, the top
    ``top``, and how much of the profile the page was busy (not ``(idle)``)."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    self_us: dict[int, float] = {}
    samples, deltas = profile.get("samples", []), profile.get("timeDeltas", [])
    for sample, delta in zip(samples[1:], deltas[1:], strict=False):
        self_us[sample] = self_us.get(sample, 0.0) + delta
    by_function: dict[tuple[str, str], float] = {}
    for node_id, micros in self_us.items():
        frame = nodes[node_id]["callFrame"]
        url = frame.get("url", "").rsplit("/", 1)[-1]
        where = f"{url}:{frame.get('lineNumber', -1) + 1}" if url else ""
        key = (frame.get("functionName") or "(anonymous)", where)
        by_function[key] = by_function.get(key, 0.0) + micros
    total = sum(by_function.values()) or 1.0
    idle = sum(us for (name, _), us in by_function.items() if name == "(idle)")
    ranked = sorted(by_function.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "profiled_ms": round(total / 1000, 1),
        "busy_ms": round((total - idle) / 1000, 1),
        "top_self_time": [
            {
                "function": name,
                "where": where,
                "self_ms": round(us / 1000, 1),
                "share": round(us / total, 3),
            }
            for (name, where), us in ranked
        ],
    }


def _start_profiler(context: Any, page: Any, interval_us: int) -> Any:
    """V8's sampling CPU profiler on ``page``, started (CDP ``Profiler``)."""
    cdp = context.new_cdp_session(page)
    cdp.send("Profiler.enable")
    cdp.send("Profiler.setSamplingInterval", {"interval": interval_us})
    cdp.send("Profiler.start")
    return cdp


def browser_catchup(
    browser: Any, stack: Any, count: int, timeout_s: float, profile: bool = False
) -> dict[str, Any]:
    """One catch-up in a new page (see the module doc); raises unless all arrived in order."""
    context, page, errors = _new_page(browser, stack)
    try:
        connect_started = time.perf_counter()
        _connect_page(page, stack, CATCHUP_USER)
        connect_ms = (time.perf_counter() - connect_started) * 1000
        cdp = _start_profiler(context, page, 200) if profile else None
        got = page.evaluate(_CATCHUP, {"count": count, "timeoutMs": int(timeout_s * 1000)})
        top = None
        if cdp is not None:
            top = _profile_top(cdp.send("Profiler.stop")["profile"])
            cdp.detach()
        if got["seen"] == count:
            got.update(
                page.evaluate(
                    _API_READS,
                    {"channel": got["channel"], "count": count, "parallel": PARALLEL_READS},
                )
            )
    finally:
        _close_page(context, page)
    if got["wrong"] is not None or got["seen"] != count or got["last"] != count:
        raise BenchmarkError(
            f"web catch-up: {got['seen']} callbacks, last seq {got['last']}, "
            f"first out of order {got['wrong']} (expected 1..{count} once, in order)"
        )
    if errors:
        raise BenchmarkError(f"web catch-up: page errors {errors[:3]}")
    window_s = got["window_ms"] / 1000
    api_s = got["api_only_ms"] / 1000
    result = {
        "changes": count,
        "in_order_once": True,
        "connect_ms": round(connect_ms, 1),
        "subscribe_call_ms": round(got["subscribe_call_ms"], 1),
        "first_change_ms": rounded(got["first_change_ms"], 1),
        "catchup_window_ms": round(got["window_ms"], 1),
        "catchup_changes_per_s": round(count / window_s),
        "api_calls": got["stats"].get("apiCalls", got["stats"].get("api_calls")),
        "client_stats": got["stats"],
        "api_only_changes": got["fetched"],
        "api_only_pages": got["pages"],
        "api_only_s": round(api_s, 3),
        "api_only_changes_per_s": round(got["fetched"] / api_s) if api_s > 0 else None,
        "api_parallel_reads": PARALLEL_READS,
        "api_parallel_changes": got["parallel_fetched"],
        "api_parallel_changes_per_s": round(got["parallel_fetched"] / (got["parallel_ms"] / 1000)),
    }
    if top is not None:
        result["profile"] = top
    return result


def browser_overhead(
    browser: Any, stack: Any, owner_user: str, count: int, rate: float, profile: bool = False
) -> dict[str, Any]:
    """Arrival of the WebSocket frame → application callback, per live change (module doc)."""
    context, page, errors = _new_page(browser, stack, isolated=True)
    try:
        owner = _connect_page(page, stack, owner_user, timed=True)
        cursor = int(page.evaluate(_LIVE_SUBSCRIBE)["cursor"])
        cdp = _start_profiler(context, page, 50) if profile else None
        dynamodb = stack.client("dynamodb")
        table = stack.tables["TodosTable"]
        started = time.perf_counter()
        for n in range(count):
            due = started + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            dynamodb.put_item(
                TableName=table,
                Item={"owner": {"S": owner}, "id": {"S": f"live{n % 50}"}, "n": {"N": str(n)}},
            )
        write_s = time.perf_counter() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if page.evaluate("() => window.delivered.length") >= count:
                break
            time.sleep(0.2)
        time.sleep(0.5)
        top = None
        if cdp is not None:
            top = _profile_top(cdp.send("Profiler.stop")["profile"], top=25)
            cdp.detach()
        got = page.evaluate(_LIVE_COLLECT)
    finally:
        _close_page(context, page)
    seqs = [row[0] for row in got["delivered"]]
    if seqs != list(range(cursor + 1, cursor + count + 1)):
        raise BenchmarkError(
            f"web overhead: {len(seqs)} callbacks for {count} live changes after seq {cursor}, "
            "not each once and in order"
        )
    if errors:
        raise BenchmarkError(f"web overhead: page errors {errors[:3]}")
    costs = [at - arrived for _seq, at, arrived in got["delivered"] if arrived is not None]
    return {
        "changes": count,
        "rate_per_s": rate,
        "write_s": round(write_s, 2),
        "delivered": len(seqs),
        "in_order_once": True,
        "frames": got["frames"],
        "matched": len(costs),
        "pushed": got["stats"].get("pushed"),
        "filled": got["stats"].get("filled"),
        "overhead": _summary(costs),
        **({"profile": top} if top is not None else {}),
    }


def python_catchup(worker: Worker, head: int, timeout_s: float) -> dict[str, Any]:
    """The Python client's catch-up of the same channel from 0 (``bench.client``'s own)."""
    got = worker.call(("catchup", 0, head), "catchup", timeout_s)
    if not got["in_order_once"] or got["delivered"] != head:
        raise BenchmarkError(f"python catch-up: {got['delivered']} of {head}, or out of order")
    return got


def write_change_log(stack: Any, owner: str, count: int, sample: int) -> dict[str, Any]:
    """``sample`` changes through PutItem → stream → publisher function (timed), the rest
    through the in-process publisher; then checks the channel's head and log."""
    channel = f"users/{owner}/todos"
    dynamodb = stack.client("dynamodb")
    table = stack.tables["TodosTable"]
    started = time.perf_counter()
    for n in range(sample):
        dynamodb.put_item(
            TableName=table,
            Item={"owner": {"S": owner}, "id": {"S": f"put{n}"}, "n": {"N": str(n)}},
        )
    put_s = time.perf_counter() - started
    deadline = time.monotonic() + 120
    head = 0
    while time.monotonic() < deadline:
        head, _ = change_log_state(stack, channel, 0)
        if head >= sample:
            break
        time.sleep(0.2)
    if head < sample:
        raise BenchmarkError(f"PutItem path: head {head} of {sample} after 120 s")
    path_s = time.perf_counter() - started
    rest = write_through_publisher(stack, owner, count - sample) if count > sample else {}
    head, logged = change_log_state(stack, channel, 0)
    if head != count or logged != count:
        raise BenchmarkError(f"the change log holds {logged} changes (head {head}), not {count}")
    return {
        "changes": count,
        "putitem_path": {
            "changes": sample,
            "putitem_s": round(put_s, 2),
            "to_head_s": round(path_s, 2),
            "changes_per_s": round(sample / path_s, 1),
            "all_would_take_s": round(count * path_s / sample, 0),
        },
        "publisher_in_process": rest,
        "head": head,
        "logged": logged,
    }


def measure(
    changes: int = 10_000,
    runs: int = 3,
    live: int = 500,
    live_rate: float = 25.0,
    putitem_sample: int = 10_000,
    profile: bool = False,
    say: Any = print,
) -> dict[str, Any]:
    """Everything in the module doc; every process it starts is stopped on the way out."""
    from tests.support.browser import chromium

    started = time.monotonic()
    out: dict[str, Any] = {}
    worker: Worker | None = None
    with tempfile.TemporaryDirectory(prefix="tidings-bench-web-") as tmp:
        log_file = Path(tmp) / "stack.log"
        say(f"starting the local stack (its logs: {log_file})...")
        with stderr_to(log_file), local_stack(Path(tmp) / "stack") as stack:
            stack_s = time.monotonic() - started
            add_users(stack, [CATCHUP_USER, LIVE_USER])
            try:
                worker = Worker(
                    "python-client",
                    client_process,
                    (
                        {
                            "ca_file": stack.ca_file,
                            "api_url": stack.api_url,
                            "identity_url": stack.identity_url,
                            "catchup_timeout_s": 60 + changes / 100,
                        },
                    ),
                )
                worker.call(None, "ready", 60)
                owner = worker.call(("live", "open"), "live", 60)["identity_id"]
                rest = changes - putitem_sample
                say(
                    f"writing {changes:,} changes through PutItem, the stream and the publisher "
                    "function"
                    + (f" ({rest:,} of them through the publisher in-process)" if rest else "")
                    + "..."
                )
                # the live client sees the first PutItem change, then goes offline
                live_client = worker
                waiter = threading.Thread(
                    target=lambda: out.setdefault(
                        "live", live_client.call(("live", "wait"), "live", 120)
                    ),
                    daemon=True,
                )
                waiter.start()
                out["writes"] = write_change_log(stack, owner, changes, putitem_sample)
                waiter.join(130)
                head = out["writes"]["head"]
                channel = f"users/{owner}/todos"
                out["moto_query_1000_ms"] = {
                    "after_0": time_log_query(stack, channel, 0),
                    f"after_{max(0, head - 1000)}": time_log_query(
                        stack, channel, max(0, head - 1000)
                    ),
                }
                say(f"change log at head {head:,}; catch-up, {runs} runs each...")
                web_runs: list[dict[str, Any]] = []
                py_runs: list[dict[str, Any]] = []
                with chromium(stack.ca_file) as browser:
                    out["chromium"] = browser.version
                    for n in range(runs):
                        web = browser_catchup(browser, stack, head, 60 + changes / 100)
                        web_runs.append(web)
                        py = python_catchup(worker, head, 120 + changes / 50)
                        py_runs.append(py)
                        say(
                            f"  run {n + 1}: web {web['catchup_changes_per_s']:,}/s "
                            f"(API alone {web['api_only_changes_per_s']:,}/s), python "
                            f"{py['catchup_changes_per_s']:,.0f}/s "
                            f"(API alone {py['api_only_changes_per_s']:,.0f}/s)"
                        )
                    if profile:
                        say("  one more web run under the CPU profiler...")
                        out["profiled_run"] = browser_catchup(
                            browser, stack, head, 60 + changes / 100, profile=True
                        )
                    say(f"overhead: {live} live changes at {live_rate:g}/s into a new page...")
                    out["overhead"] = browser_overhead(browser, stack, LIVE_USER, live, live_rate)
                    if profile:
                        say("  200 more live changes into a new page, under the CPU profiler...")
                        out["profiled_overhead"] = browser_overhead(
                            browser, stack, LIVE_USER, 200, live_rate, profile=True
                        )
                out["web_runs"] = web_runs
                out["python_runs"] = py_runs
                worker.stop()
                worker = None
            finally:
                if worker is not None:
                    worker.stop()
    out["setup"] = {
        "stack_start_s": round(stack_s, 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    return out
