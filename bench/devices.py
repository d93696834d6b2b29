"""Devices benchmark: what X.509 devices cost the local AWS IoT gateway and credentials provider.

Measured in one run, against one server process that runs the gateway (``GatewayThread``
with mutual TLS on its own port, a :class:`tests.support.devices.MemoryDeviceDirectory`, no
moto) and the AWS IoT credentials provider (``CredentialsProvider``) on 127.0.0.1:

* **connections held** — open up to ``--connections`` (5,000) MQTT connections over mutual
  TLS (TLS handshake with an RSA 2048 device certificate, the directory lookup, CONNECT and
  CONNACK), hold them idle, and divide the server process's RSS growth (psutil) by the
  connections still open: KiB per connection;
* **handshakes/s** — full connects (TCP, TLS handshake, CONNECT/CONNACK, then DISCONNECT and
  close) with ``--concurrency`` (4) clients at a time, over mutual TLS and over TLS
  WebSocket with a SigV4-presigned ``/mqtt`` upgrade, in alternating rounds of
  ``--round`` seconds; also the server's CPU per handshake, which does not depend on the load
  client's speed;
* **credentials provider requests/s** — ``GET /role-aliases/<alias>/credentials`` with a
  device certificate: a new TLS connection per request (as devices do; the headline) and
  requests on kept-alive connections.

The load clients are this process's own: non-blocking sockets and :class:`ssl.SSLSocket` on
the asyncio loop, the MQTT and WebSocket bits of ``bench/mqtt_load.py``; not the SDKs. Device
certificates come from a pool (``--certificates``, 8) issued by a
:class:`~infra.local.awsauth.devices.DeviceCA`, each registered with an IoT policy that lets
it connect as ``bench-*`` and assume the benchmark's role alias. The server is pinned to one
CPU and this process to the others (``--no-pin`` to turn off); it is stopped by its PID when
the run ends, on error and on Ctrl-C/SIGTERM too (and gets SIGTERM if this process dies).

Usage::

    .venv/bin/python bench/devices.py            # full run: 1.5-4.5 minutes (machine load)
    .venv/bin/python bench/devices.py --quick    # 15-30 s (300 connections, short rounds)

Writes ``bench/results/devices.json`` (``--output`` to change). Exit status 0 even when a goal
is missed; 1 when the server does not start or the connections fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench import mqtt_load as load  # noqa: E402
from bench.fanout import wait_for_quiet  # noqa: E402
from bench.report import goal, show_report  # noqa: E402

REGION = "us-east-1"
ACCOUNT = "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
ROLE_ALIAS = "bench-device-role-alias"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/bench-device-role"
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "devices.json"

GOAL_CONNECTIONS = 5000
GOAL_KIB_PER_CONNECTION = 64.0
GOAL_HANDSHAKE_RATIO = 0.8

CONNACK = 2
DISCONNECT = b"\xe0\x00"
BUSY_CPU_PERCENT = 90.0


class BenchmarkError(Exception):
    """A real failure (not a missed goal): the server did not start, connections failed."""


def device_policy() -> dict[str, Any]:
    """The benchmark certificates' IoT policy: connect as ``bench-*``, assume the role alias."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/bench-*"},
            {
                "Effect": "Allow",
                "Action": "iot:AssumeRoleWithCertificate",
                "Resource": f"{ARN}:rolealias/{ROLE_ALIAS}",
            },
        ],
    }


def sigv4_policy() -> dict[str, Any]:
    """The SigV4 identity's policy (role and IoT policy alike): connect as ``bench-*``."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/bench-*"}
        ],
    }


# ---------------------------------------------------------------------------------- server


def serve(workdir: Path) -> int:
    """The server process: gateway + credentials provider until SIGTERM or stdin closes.

    Reads ``devices.json`` and ``credentials.json`` from ``workdir``; writes ``server.json``
    (ports, CA file) once both serve.
    """
    from infra.local.awsauth.credential_store import CredentialStore
    from infra.local.awsauth.devices import Device
    from infra.local.identity.credentials_provider import CredentialsProvider, RoleAlias
    from infra.local.iot.gateway import GatewayConfig
    from infra.local.iot.gateway_thread import GatewayThread
    from tests.support.devices import MemoryDeviceDirectory

    load.raise_nofile_limit()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    spec = json.loads((workdir / "devices.json").read_text(encoding="utf-8"))
    directory = MemoryDeviceDirectory()
    for entry in spec["devices"]:
        directory.register(
            Device(
                certificate_id=entry["certificate_id"],
                certificate_arn=f"{ARN}:cert/{entry['certificate_id']}",
                status="ACTIVE",
                things=(entry["thing"],),
                policies=(device_policy(),),
                common_name=entry["thing"],
            )
        )
    store = CredentialStore.from_file(workdir / "credentials.json")
    device_ca_file = Path(spec["device_ca_file"])
    config = GatewayConfig(
        port=0, state_dir=workdir / "state", mtls_port=0, device_ca_file=device_ca_file
    )
    aliases = {ROLE_ALIAS: RoleAlias(ROLE_ARN, [sigv4_policy()])}
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def watch_stdin() -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdin.buffer.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with GatewayThread(config, store, directory) as running:
        assert running.gateway is not None and running.mtls_port is not None
        tls = running.gateway.tls
        with CredentialsProvider(directory, aliases, store, tls, device_ca_file) as provider:
            info = {
                "pid": os.getpid(),
                "port": running.port,
                "mtls_port": running.mtls_port,
                "provider_port": provider.port,
                "ca_file": str(running.gateway.ca_file),
            }
            ready = workdir / "server.json.tmp"
            ready.write_text(json.dumps(info), encoding="utf-8")
            ready.rename(workdir / "server.json")
            while not stop.wait(0.5):
                pass
    return 0


@dataclass
class Server:
    """The server process we started, and where it listens."""

    process: subprocess.Popen[bytes]
    log_file: Path
    port: int = 0
    mtls_port: int = 0
    provider_port: int = 0
    ca_file: str = ""

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def stop(self) -> None:
        """Stop the server by its PID: close its stdin, SIGTERM, SIGKILL after 10 s."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(10)

    def log_tail(self, lines: int = 15) -> str:
        """The end of the server's log, for error messages."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _parent_death_signal() -> Any:
    """A pre-exec hook making the child get SIGTERM if the benchmark dies (Linux only)."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


def start_server(workdir: Path, timeout: float = 60.0) -> Server:
    """Start ``bench/devices.py --serve workdir`` and wait until it serves."""
    log_file = workdir / "server.log"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(workdir)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_parent_death_signal(),
        )
    server = Server(process, log_file)
    ready = workdir / "server.json"
    deadline = time.monotonic() + timeout
    try:
        while not ready.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(f"the server did not start:\n{server.log_tail()}")
            time.sleep(0.05)
        info = json.loads(ready.read_text(encoding="utf-8"))
    except BaseException:
        server.stop()
        raise
    server.port = info["port"]
    server.mtls_port = info["mtls_port"]
    server.provider_port = info["provider_port"]
    server.ca_file = info["ca_file"]
    return server


# ---------------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class Fixtures:
    """What the clients hold: device certificates (as client TLS contexts) and SigV4 keys."""

    device_contexts: tuple[ssl.SSLContext, ...]
    things: tuple[str, ...]
    credentials: tuple[str, str, str]


def prepare(workdir: Path, certificates: int) -> tuple[list[tuple[Path, Path, str]], Any]:
    """Issue ``certificates`` device certificates and one SigV4 credential into ``workdir``
    (``devices.json``, ``credentials.json``); returns the files and the credential."""
    from infra.local.awsauth.credential_store import write_credentials_file
    from infra.local.awsauth.devices import DeviceCA, certificate_id
    from infra.local.awsauth.temporary_credentials import mint_temporary_credential

    ca = DeviceCA.load_or_create(workdir / "device-ca")
    files: list[tuple[Path, Path, str]] = []
    entries = []
    for index in range(certificates):
        thing = f"bench-thing-{index}"
        cert_pem, key_pem = ca.issue(thing, days=2)
        cert_file = workdir / "devices" / f"{thing}.cert.pem"
        key_file = workdir / "devices" / f"{thing}.key.pem"
        cert_file.parent.mkdir(parents=True, exist_ok=True)
        cert_file.write_text(cert_pem)
        key_file.write_text(key_pem)
        der = ssl.PEM_cert_to_DER_cert(cert_pem)
        entries.append({"certificate_id": certificate_id(der), "thing": thing})
        files.append((cert_file, key_file, thing))
    (workdir / "devices.json").write_text(
        json.dumps({"device_ca_file": str(ca.cert_file), "devices": entries}), encoding="utf-8"
    )
    document = sigv4_policy()
    credential = mint_temporary_credential(
        "bench-role/bench-session", [[document], [document]], lifetime_s=6 * 3600
    )
    write_credentials_file(workdir / "credentials.json", [credential])
    return files, credential


def client_contexts(
    files: list[tuple[Path, Path, str]], server_ca: str
) -> tuple[ssl.SSLContext, ...]:
    """One client TLS context per device certificate, verifying the stack's server CA."""
    contexts = []
    for cert_file, key_file, _ in files:
        context = ssl.create_default_context(cafile=server_ca)
        context.load_cert_chain(cert_file, key_file)
        contexts.append(context)
    return tuple(contexts)


# ---------------------------------------------------------------------------------- clients


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, writable: bool) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not future.done():
            future.set_result(None)

    (loop.add_writer if writable else loop.add_reader)(fd, wake)
    try:
        await future
    finally:
        (loop.remove_writer if writable else loop.remove_reader)(fd)


async def open_tls(port: int, context: ssl.SSLContext, timeout: float = 30.0) -> ssl.SSLSocket:
    """A non-blocking TLS socket to 127.0.0.1:``port`` with its handshake done."""
    loop = asyncio.get_running_loop()
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setblocking(False)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock: socket.socket = raw
    try:
        await asyncio.wait_for(loop.sock_connect(raw, ("127.0.0.1", port)), timeout)
        sock = context.wrap_socket(raw, server_hostname="localhost", do_handshake_on_connect=False)
        deadline = loop.time() + timeout
        while True:
            try:
                sock.do_handshake()
                break
            except ssl.SSLWantReadError:
                waiting = _ready(loop, sock.fileno(), False)
            except ssl.SSLWantWriteError:
                waiting = _ready(loop, sock.fileno(), True)
            await asyncio.wait_for(waiting, max(0.001, deadline - loop.time()))
    except BaseException:
        sock.close()
        raise
    assert isinstance(sock, ssl.SSLSocket)
    return sock


async def connect_mtls(
    port: int, context: ssl.SSLContext, client_id: str, timeout: float = 30.0
) -> load.LeanClient:
    """MQTT 3.1.1 over mutual TLS: handshake with the device certificate, CONNECT, CONNACK."""
    sock = await open_tls(port, context, timeout)
    loop = asyncio.get_running_loop()
    client = load.LeanClient(sock, load.Target("mtls", "tcp", port), loop)
    client.start_reading()
    try:
        client.write(load.mqtt_connect(client_id, 1200))
        body = await client.expect(CONNACK, timeout)
        if len(body) < 2 or body[1] != 0:
            raise load.ConnectError(f"CONNACK refused the connection ({body[1:2].hex()})")
    except BaseException:
        client.close()
        raise
    return client


def disconnect(client: load.LeanClient) -> None:
    """MQTT DISCONNECT, then close the socket."""
    client.write(client.frame(DISCONNECT))
    client.close()


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _machine_busy_s() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


class CpuMeter:
    """CPU seconds the server, this process and other programs used since it was made."""

    def __init__(self, server: Server) -> None:
        self._process = psutil.Process(server.pid)
        self._server = _cpu_s(self._process)
        self._own = _own_cpu_s()
        self._machine = _machine_busy_s()

    def used(self) -> dict[str, float]:
        """``server``, ``client`` and ``other`` CPU seconds so far."""
        server = _cpu_s(self._process) - self._server
        client = _own_cpu_s() - self._own
        machine = _machine_busy_s() - self._machine
        return {"server": server, "client": client, "other": max(0.0, machine - server - client)}


# ---------------------------------------------------------------------------------- phases


async def hold_connections(
    server: Server, fixtures: Fixtures, count: int, concurrency: int, timeout: float
) -> dict[str, Any]:
    """Open ``count`` mTLS connections, hold them idle; the server's RSS before and after."""
    process = psutil.Process(server.pid)
    rss_before = process.memory_info().rss
    fds_before = process.num_fds()
    contexts = fixtures.device_contexts
    gate = asyncio.Semaphore(concurrency)
    failures: Counter[str] = Counter()
    clients: list[load.LeanClient] = []

    async def one(index: int) -> None:
        async with gate:
            try:
                context = contexts[index % len(contexts)]
                clients.append(await connect_mtls(server.mtls_port, context, f"bench-held-{index}"))
            except Exception as exc:
                failures[f"{type(exc).__name__}: {exc}"[:160]] += 1

    started = time.monotonic()
    tasks = [asyncio.ensure_future(one(i)) for i in range(count)]
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        seconds = time.monotonic() - started
        await asyncio.sleep(1.0)  # let the server finish what the last connections queued
        rss_after = process.memory_info().rss
        fds_after = process.num_fds()
        await asyncio.sleep(1.0)  # and see that they stay up
        still_open = sum(1 for c in clients if not c.closed)
    finally:
        for client in clients:
            client.close()
    per_connection = (rss_after - rss_before) / 1024 / still_open if still_open else None
    return {
        "attempted": count,
        "opened": len(clients),
        "connections_held": still_open,
        "failed": sum(failures.values()),
        "unfinished": len(pending),
        "failure_reasons": dict(failures.most_common(3)),
        "seconds_to_open": round(seconds, 2),
        "connections_per_s": round(len(clients) / seconds, 1) if seconds else None,
        "server_fds_added": fds_after - fds_before,
        "rss_before_mib": round(rss_before / 2**20, 1),
        "rss_after_mib": round(rss_after / 2**20, 1),
        "kib_per_connection": round(per_connection, 2) if per_connection is not None else None,
    }


Connector = Callable[[str], Awaitable[load.LeanClient]]


async def handshake_round(
    kind: str, connector: Connector, concurrency: int, seconds: float, server: Server
) -> dict[str, Any]:
    """``concurrency`` clients connect and disconnect in a loop for ``seconds``."""
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    failures: Counter[str] = Counter()
    meter = CpuMeter(server)
    started = time.perf_counter()
    end = loop.time() + seconds

    async def worker(number: int) -> None:
        attempt = 0
        while loop.time() < end:
            attempt += 1
            began = time.perf_counter_ns()
            try:
                client = await connector(f"bench-{kind}-{number}-{attempt}")
            except Exception as exc:
                failures[f"{type(exc).__name__}: {exc}"[:160]] += 1
                if sum(failures.values()) > 50 and not latencies:
                    raise BenchmarkError(f"{kind} connections fail: {dict(failures)}") from exc
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter_ns() - began)
            disconnect(client)

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = meter.used()
    return {
        "kind": kind,
        "handshakes": len(latencies),
        "failed": sum(failures.values()),
        "failure_reasons": dict(failures.most_common(3)),
        "seconds": elapsed,
        "server_cpu_s": cpu["server"],
        "client_cpu_s": cpu["client"],
        "other_cpu_s": cpu["other"],
        "latencies_ns": latencies,
    }


def _bound_by(server_percent: float, client_percent: float) -> str:
    if server_percent >= BUSY_CPU_PERCENT:
        return "server"
    if client_percent >= BUSY_CPU_PERCENT:
        return "load client"
    return "neither"


def summarise_handshakes(rounds: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """One transport's rounds together: handshakes/s, latency, CPU per handshake."""
    mine = [r for r in rounds if r["kind"] == kind]
    count = sum(r["handshakes"] for r in mine)
    seconds = sum(r["seconds"] for r in mine)
    server_cpu = sum(r["server_cpu_s"] for r in mine)
    client_cpu = sum(r["client_cpu_s"] for r in mine)
    other_cpu = sum(r["other_cpu_s"] for r in mine)
    server_percent = round(100 * server_cpu / seconds, 1) if seconds else 0.0
    client_percent = round(100 * client_cpu / seconds, 1) if seconds else 0.0
    latency = load.percentiles_ms([x for r in mine for x in r["latencies_ns"]])
    return {
        "handshakes": count,
        "failed": sum(r["failed"] for r in mine),
        "seconds": round(seconds, 2),
        "per_s": round(count / seconds, 1) if seconds else None,
        "rounds_per_s": [round(r["handshakes"] / r["seconds"], 1) for r in mine if r["seconds"]],
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "server_cpu_ms_per_handshake": round(1000 * server_cpu / count, 3) if count else None,
        "client_cpu_ms_per_handshake": round(1000 * client_cpu / count, 3) if count else None,
        "server_cpu_percent": server_percent,
        "client_cpu_percent": client_percent,
        "other_cpu_percent": round(100 * other_cpu / seconds, 1) if seconds else 0.0,
        "bound_by": _bound_by(server_percent, client_percent),
    }


async def measure_handshakes(
    server: Server, fixtures: Fixtures, concurrency: int, round_s: float, rounds: int
) -> dict[str, Any]:
    """Alternating rounds of mTLS and SigV4 WebSocket connects; a short warm-up first."""
    contexts = fixtures.device_contexts
    picked = [0]

    def mtls(client_id: str) -> Awaitable[load.LeanClient]:
        picked[0] += 1
        context = contexts[picked[0] % len(contexts)]
        return connect_mtls(server.mtls_port, context, client_id)

    target = load.Target(
        "tidings",
        "wss",
        server.port,
        ca_file=server.ca_file,
        credentials=fixtures.credentials,
        region=REGION,
    )
    wss_context = target.ssl_context()

    def wss(client_id: str) -> Awaitable[load.LeanClient]:
        # presigned per connection, as a client does (botocore's SigV4QueryAuth)
        return load.connect(target, client_id, context=wss_context)

    connectors: dict[str, Connector] = {"mtls": mtls, "wss_sigv4": wss}
    for kind, connector in connectors.items():
        await handshake_round(kind, connector, concurrency, min(0.5, round_s), server)
    results = []
    for number in range(rounds):
        order = list(connectors) if number % 2 == 0 else list(reversed(connectors))
        for kind in order:
            results.append(
                await handshake_round(kind, connectors[kind], concurrency, round_s, server)
            )
    return {kind: summarise_handshakes(results, kind) for kind in connectors}


async def _http_response(sock: ssl.SSLSocket, timeout: float) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response (status, body) from a non-blocking TLS socket."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    data = bytearray()
    length = -1
    head_end = -1
    while True:
        try:
            chunk = sock.recv(65536)
        except ssl.SSLWantReadError:
            await asyncio.wait_for(
                _ready(loop, sock.fileno(), False), max(0.001, deadline - loop.time())
            )
            continue
        if not chunk:
            raise ConnectionError("the credentials provider closed the connection")
        data += chunk
        if head_end < 0:
            head_end = data.find(b"\r\n\r\n")
            if head_end >= 0:
                for line in bytes(data[:head_end]).decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
        if head_end >= 0 and len(data) - head_end - 4 >= max(length, 0):
            status = int(bytes(data[9:12]))
            return status, bytes(data[head_end + 4 : head_end + 4 + max(length, 0)])


async def provider_round(
    server: Server, fixtures: Fixtures, keep_alive: bool, concurrency: int, seconds: float
) -> dict[str, Any]:
    """Credentials requests for ``seconds``: a new TLS connection per request, or kept alive."""
    loop = asyncio.get_running_loop()
    latencies: list[int] = []
    failures: Counter[str] = Counter()
    path = f"/role-aliases/{ROLE_ALIAS}/credentials"
    connection = "keep-alive" if keep_alive else "close"
    meter = CpuMeter(server)
    started = time.perf_counter()
    end = loop.time() + seconds

    def request(thing: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: localhost:{server.provider_port}\r\n"
            f"x-amzn-iot-thingname: {thing}\r\nConnection: {connection}\r\n\r\n"
        ).encode("latin-1")

    async def ask(sock: ssl.SSLSocket, thing: str) -> None:
        sock.sendall(request(thing))  # small: fits the socket buffer
        status, body = await _http_response(sock, 30.0)
        if status != 200 or b'"accessKeyId"' not in body:
            raise BenchmarkError(f"credentials request answered {status}: {body[:200]!r}")

    async def worker(number: int) -> None:
        index = number % len(fixtures.device_contexts)
        context, thing = fixtures.device_contexts[index], fixtures.things[index]
        sock: ssl.SSLSocket | None = None
        try:
            while loop.time() < end:
                began = time.perf_counter_ns()
                try:
                    if sock is None:
                        sock = await open_tls(server.provider_port, context)
                    await ask(sock, thing)
                except BenchmarkError:
                    raise
                except Exception as exc:
                    failures[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    if sock is not None:
                        sock.close()
                        sock = None
                    if sum(failures.values()) > 50 and not latencies:
                        raise BenchmarkError(
                            f"credentials requests fail: {dict(failures)}"
                        ) from exc
                    await asyncio.sleep(0.01)
                    continue
                latencies.append(time.perf_counter_ns() - began)
                if not keep_alive:
                    sock.close()
                    sock = None
        finally:
            if sock is not None:
                sock.close()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    cpu = meter.used()
    server_cpu_s = cpu["server"]
    server_percent = round(100 * server_cpu_s / elapsed, 1)
    client_percent = round(100 * cpu["client"] / elapsed, 1)
    latency = load.percentiles_ms(latencies)
    return {
        "requests": len(latencies),
        "failed": sum(failures.values()),
        "failure_reasons": dict(failures.most_common(3)),
        "seconds": round(elapsed, 2),
        "per_s": round(len(latencies) / elapsed, 1) if elapsed else None,
        "p50_ms": latency["p50_ms"],
        "p99_ms": latency["p99_ms"],
        "server_cpu_ms_per_request": round(1000 * server_cpu_s / len(latencies), 3)
        if latencies
        else None,
        "server_cpu_percent": server_percent,
        "client_cpu_percent": client_percent,
        "other_cpu_percent": round(100 * cpu["other"] / elapsed, 1),
        "bound_by": _bound_by(server_percent, client_percent),
    }


# ---------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Settings:
    """The run's parameters."""

    connections: int
    connections_requested: int
    nofile_limit: int
    hold_concurrency: int
    concurrency: int
    round_s: float
    rounds: int
    provider_s: float
    certificates: int
    pin: bool
    quiet_wait_s: float


def build_report(
    settings: Settings,
    held: dict[str, Any],
    handshakes: dict[str, Any],
    provider: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    """The JSON document: headline figures, goals, every phase's details."""
    mtls, wss = handshakes["mtls"], handshakes["wss_sigv4"]
    ratio = round(mtls["per_s"] / wss["per_s"], 3) if mtls["per_s"] and wss["per_s"] else None
    mtls_cpu, wss_cpu = mtls["server_cpu_ms_per_handshake"], wss["server_cpu_ms_per_handshake"]
    cpu_ratio = round(wss_cpu / mtls_cpu, 3) if mtls_cpu and wss_cpu else None
    count, kib = held.get("connections_held"), held.get("kib_per_connection")
    goals = {
        "connections": goal(
            f">= {GOAL_CONNECTIONS} mTLS connections at <= {GOAL_KIB_PER_CONNECTION:g} KiB each",
            {"connections_held": count, "kib_per_connection": kib},
            count is not None
            and kib is not None
            and count >= GOAL_CONNECTIONS
            and kib <= GOAL_KIB_PER_CONNECTION,
        ),
        "handshakes": goal(
            f"mTLS handshakes/s >= {GOAL_HANDSHAKE_RATIO:g}x SigV4 WebSocket handshakes/s",
            ratio,
            ratio is not None and ratio >= GOAL_HANDSHAKE_RATIO,
        ),
    }
    return {
        "mtls_handshakes_per_s": mtls["per_s"],
        "wss_sigv4_handshakes_per_s": wss["per_s"],
        "mtls_vs_wss_handshakes": ratio,
        "mtls_vs_wss_server_cpu": cpu_ratio,
        "mtls_connections_held": count,
        "kib_per_mtls_connection": kib,
        "credentials_provider_per_s": provider["new_connection"]["per_s"],
        "credentials_provider_keep_alive_per_s": provider["keep_alive"]["per_s"],
        "parameters": {
            "connections": settings.connections,
            "connections_requested": settings.connections_requested,
            "nofile_limit": settings.nofile_limit,
            "hold_concurrency": settings.hold_concurrency,
            "concurrency": settings.concurrency,
            "round_s": settings.round_s,
            "rounds_per_transport": settings.rounds,
            "credentials_provider_s": settings.provider_s,
            "device_certificates": settings.certificates,
            "device_key": "RSA 2048 (as CreateKeysAndCertificate)",
            "mqtt": "3.1.1, clean session",
            "pinned": settings.pin,
            "quiet_wait_s": settings.quiet_wait_s,
            "cpus": os.cpu_count(),
        },
        "goals": goals,
        "handshakes": handshakes,
        "connection_test": held,
        "credentials_provider": provider,
        "seconds": round(seconds, 1),
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def _cpu_text(figures: dict[str, Any]) -> str:
    keys = ("server_cpu_percent", "client_cpu_percent", "other_cpu_percent")
    return "/".join(f"{figures[key]:.0f}" for key in keys)


def render_table(report: dict[str, Any]) -> str:
    """The human-readable summary."""
    p = report["parameters"]
    lines = [
        f"Devices: gateway + credentials provider in one server process; {p['concurrency']} "
        f"clients at a time, {p['rounds_per_transport']} alternating rounds of "
        f"{p['round_s']:g} s per transport; {p['device_certificates']} RSA 2048 device "
        "certificates",
        "",
        f"{'connects (TLS + CONNECT/CONNACK)':<34} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv CPU ms':>10} {'CPU% srv/cli/oth':>17} {'bound by':>12}",
    ]
    for name, label in (("mtls", "mutual TLS (port 8883 role)"), ("wss_sigv4", "WSS, SigV4")):
        h = report["handshakes"][name]
        lines.append(
            f"{label:<34} {_fmt(h['per_s']):>8} {_fmt(h['p50_ms'], '.2f'):>7} "
            f"{_fmt(h['p99_ms'], '.2f'):>7} {_fmt(h['server_cpu_ms_per_handshake'], '.2f'):>10} "
            f"{_cpu_text(h):>17} "
            f"{h['bound_by']:>12}"
        )
    lines.append(
        f"{'credentials provider':<34} {'per s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'srv CPU ms':>10} {'CPU% srv/cli/oth':>17} {'bound by':>12}"
    )
    modes = (
        ("new_connection", "new TLS connection per request"),
        ("keep_alive", "kept-alive connections"),
    )
    for name, label in modes:
        c = report["credentials_provider"][name]
        lines.append(
            f"{label:<34} {_fmt(c['per_s']):>8} {_fmt(c['p50_ms'], '.2f'):>7} "
            f"{_fmt(c['p99_ms'], '.2f'):>7} {_fmt(c['server_cpu_ms_per_request'], '.2f'):>10} "
            f"{_cpu_text(c):>17} "
            f"{c['bound_by']:>12}"
        )
    c = report["connection_test"]
    lines += [
        "",
        f"mTLS / WSS handshakes/s: {_fmt(report['mtls_vs_wss_handshakes'], '.2f')}; "
        "what a server-bound gateway would reach (WSS / mTLS server CPU per handshake): "
        f"{_fmt(report['mtls_vs_wss_server_cpu'], '.2f')}",
        "srv CPU ms is the server's CPU per connect or request (independent of the load "
        "client's speed); CPU% is % of one core used by the server, the load client and other "
        f"programs (high 'oth' makes every rate low); bound by: a process at >= "
        f"{BUSY_CPU_PERCENT:.0f}%.",
        "",
        f"mTLS connections held: {c['connections_held']:,} of {c['attempted']:,} "
        f"({c['failed']} failed), opened in {c['seconds_to_open']:.1f} s "
        f"({_fmt(c['connections_per_s'])}/s); server RSS {c['rss_before_mib']} -> "
        f"{c['rss_after_mib']} MiB = {_fmt(c['kib_per_connection'], '.1f')} KiB/connection",
    ]
    if p["connections"] < p["connections_requested"]:
        lines.append(
            f"(limited to {p['connections']:,} by the open-files limit {p['nofile_limit']:,})"
        )
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
        "--quick", action="store_true", help="a few seconds: 300 connections, short rounds"
    )
    parser.add_argument(
        "--connections", type=int, help="mTLS connections to hold (default 5000; 300 --quick)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="clients connecting at a time (default 4)"
    )
    parser.add_argument(
        "--round", type=float, help="seconds per handshake round (default 3; 0.5 --quick)"
    )
    parser.add_argument("--rounds", type=int, help="rounds per transport (default 4; 2 --quick)")
    parser.add_argument(
        "--provider-seconds",
        type=float,
        help="seconds per credentials provider mode (default 5; 1 --quick)",
    )
    parser.add_argument(
        "--certificates", type=int, help="device certificates to issue (default 8; 2 --quick)"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server to CPU 0")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        help="before the handshakes and the credentials provider, wait up to this many seconds "
        "for other programs to go idle (default 10; 0 with --quick)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"where to write the JSON results (default {DEFAULT_OUTPUT})",
    )
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def pin_cpus(server_pid: int) -> bool:
    """The server on CPU 0, this process on the others; whether it pinned."""
    cpus = list(range(os.cpu_count() or 1))
    if len(cpus) < 2:
        return False
    try:
        psutil.Process(server_pid).cpu_affinity([cpus[0]])
        psutil.Process().cpu_affinity(cpus[1:])
    except (psutil.Error, AttributeError, OSError):
        return False
    return True


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; the process exit status."""
    args = _parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    quick = args.quick
    requested = args.connections if args.connections is not None else (300 if quick else 5000)
    nofile = load.raise_nofile_limit()
    connections = max(0, min(requested, nofile - 200))
    certificates = args.certificates or (2 if quick else 8)
    started_at = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tidings-bench-devices-") as tmp:
        workdir = Path(tmp)
        print(f"issuing {certificates} device certificates...", flush=True)
        files, credential = prepare(workdir, certificates)
        try:
            server = start_server(workdir)
        except BenchmarkError as exc:
            print(f"devices benchmark failed: {exc}", file=sys.stderr)
            return 1
        try:
            pinned = not args.no_pin and pin_cpus(server.pid)
            print(
                f"server: pid {server.pid}, mqtts://localhost:{server.mtls_port}, "
                f"wss://localhost:{server.port}/mqtt, "
                f"https://localhost:{server.provider_port} (credentials provider)",
                flush=True,
            )
            fixtures = Fixtures(
                client_contexts(files, server.ca_file),
                tuple(thing for _, _, thing in files),
                (
                    credential.access_key_id,
                    credential.secret_access_key,
                    credential.session_token or "",
                ),
            )
            settings = Settings(
                connections=connections,
                connections_requested=requested,
                nofile_limit=nofile,
                hold_concurrency=50,
                concurrency=args.concurrency,
                round_s=args.round or (0.5 if quick else 3.0),
                rounds=args.rounds or (2 if quick else 4),
                provider_s=args.provider_seconds or (1.0 if quick else 5.0),
                certificates=certificates,
                pin=pinned,
                quiet_wait_s=args.quiet_wait
                if args.quiet_wait is not None
                else (0.0 if quick else 10.0),
            )
            report = asyncio.run(run(server, fixtures, settings, started_at))
        except BenchmarkError as exc:
            print(f"devices benchmark failed: {exc}\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            server.stop()
    show_report(report, args.output, render_table(report))
    return 0


async def run(
    server: Server, fixtures: Fixtures, settings: Settings, started_at: float
) -> dict[str, Any]:
    """The three phases, in order: connections held, handshakes, credentials provider."""
    print(f"holding {settings.connections} mTLS connections...", flush=True)
    held = await hold_connections(
        server,
        fixtures,
        settings.connections,
        settings.hold_concurrency,
        timeout=60 + settings.connections * 0.05,
    )
    if not held["connections_held"]:
        raise BenchmarkError(f"no mTLS connection held: {held['failure_reasons']}")
    await asyncio.sleep(1.0)  # the server closes the held connections
    if settings.quiet_wait_s > 0:
        wait_for_quiet(settings.quiet_wait_s)
    print(
        f"handshakes: {settings.rounds} x {settings.round_s:g} s per transport, "
        f"{settings.concurrency} at a time...",
        flush=True,
    )
    handshakes = await measure_handshakes(
        server, fixtures, settings.concurrency, settings.round_s, settings.rounds
    )
    if settings.quiet_wait_s > 0:
        wait_for_quiet(settings.quiet_wait_s)
    print("credentials provider...", flush=True)
    provider = {
        "new_connection": await provider_round(
            server, fixtures, False, settings.concurrency, settings.provider_s
        ),
        "keep_alive": await provider_round(
            server, fixtures, True, settings.concurrency, settings.provider_s
        ),
    }
    return build_report(settings, held, handshakes, provider, time.monotonic() - started_at)


if __name__ == "__main__":
    raise SystemExit(main())
