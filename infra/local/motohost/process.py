"""moto in server mode in a process of its own, with the local stack's fixes applied.

``python -m infra.local.motohost.process PORT [NOTIFY_PORT] [--iam REGION ACCOUNT]`` listens on
127.0.0.1 (0 picks a free port) and prints ``READY <port>`` once it serves. With
``NOTIFY_PORT`` it sends a UDP datagram holding the table name to 127.0.0.1:NOTIFY_PORT
whenever a stream record is added, so the stream pumps read at once.

With ``--iam`` (the local stack always passes it) every request must be SigV4-signed with a
key the stack issued and be allowed by that key's IAM policies
(:class:`~infra.local.motohost.auth.MotoAuth`, for the stack's region and account, with
DynamoDB's condition keys from the tables moto holds). The keys come
over stdin, a pipe only the stack holds, never a file or a port: one JSON line per change,
``{"put": {...credential...}}`` (the form :func:`~infra.local.awsauth.credential_store.
credential_from_dict` reads) or ``{"remove": "<access key id>"}``, each answered on stdout by
``ACK <n>`` (``n`` counts the lines) once it is in effect, or ``NACK <n> <why>``; the stack
waits for the answer before it hands a key out. End of stdin (the stack is gone) stops the
process. Without ``--iam`` nothing is checked (the bare moto that unit-level tests use).

``TIDINGS_DEVICE_CA_DIR`` (set by the local stack) names the folder of the stack's device CA:
IoT's ``CreateKeysAndCertificate`` signs with it (:mod:`.fixes.iot_device_ca`).

Running moto apart keeps its CPU-heavy request handling off the process that runs the IoT
gateway and the stream pumps.

moto's app is served by :class:`~infra.local.motohost.wsgi_server.WsgiServer` (a thread per
kept-alive connection) rather than moto's own werkzeug server, which closes the connection
after every answer, so that every AWS call paid for a new TCP connection and a new thread. With
keep-alive (then waitress), the end-to-end benchmark's write → receive p50 went from 25 to
18 ms at 10 writes/s and from ~60 to ~40 ms at 100 writes/s; without waitress's hand-over of
every request between its socket loop and a worker thread, from 27-32 to 16-21 ms at
100 writes/s (three runs each, alternating, same session).
DynamoDB and DynamoDB Streams calls take :class:`~infra.local.motohost.fast_lane.FastLane`
past moto's Flask layer; ``TIDINGS_MOTO_FAST_LANE=0`` sends them the usual way.

``SIGUSR1`` (sent by the local stack once its start-up is done) moves the heap built so far
out of the cyclic collector's full passes, once, after a collection; every ``SIGUSR1``
answers ``FROZEN <objects in the permanent generation>`` on stdout. With another moto than
the one the fixes are written for, it prints ``ERROR <why>`` instead of ``READY`` and exits.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import socket
import sys
import threading
from typing import IO, Any

from infra.local.awsauth.credential_store import (
    CredentialFileError,
    CredentialStore,
    credential_from_dict,
)
from infra.local.motohost.auth import MotoAuth
from infra.local.motohost.dynamodb_conditions import moto_key_schemas
from infra.local.motohost.fast_lane import FastLane
from infra.local.motohost.fixes import MotoVersionError, apply_local_stack_fixes, check_moto_version
from infra.local.motohost.wsgi_server import WsgiServer


def main(argv: list[str]) -> int:
    """Serve until SIGTERM or SIGINT; freeze the heap on the first SIGUSR1."""
    # Taken by sigwait below, in this thread, whichever thread the kernel would pick: a
    # Python signal handler runs only when the main thread runs, and a main thread blocked
    # waiting on a lock is not woken by a signal delivered to another thread. Every thread
    # started from here on inherits the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        check_moto_version()
    except MotoVersionError as exc:
        print(f"ERROR {exc}", flush=True)
        return 1
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    positional, iam = _parse(argv)
    notify = _Notifier(int(positional[1])).notify if len(positional) > 1 else None
    apply_local_stack_fixes(notify)
    logging.basicConfig(level=logging.WARNING)  # errors only, no line per request
    port = int(positional[0]) if positional else 0
    dispatcher = DomainDispatcherApplication(create_backend_app)
    app: Any = dispatcher
    if os.environ.get("TIDINGS_MOTO_FAST_LANE", "1") != "0":
        app = FastLane(app)
    if iam is not None:
        credentials = CredentialStore()
        region, account_id = iam
        app = MotoAuth(
            app,
            credentials,
            region=region,
            account_id=account_id,
            dispatcher=dispatcher,
            key_schemas=moto_key_schemas(account_id, region),
        )
    try:
        server = WsgiServer(app, "127.0.0.1", port).start()
    except OSError as exc:
        _say(f"ERROR {exc}")
        return 1
    if iam is not None:
        threading.Thread(
            target=_read_credentials,
            args=(sys.stdin, credentials),
            daemon=True,
            name="moto-credentials",
        ).start()
    _say(f"READY {server.port}")
    while signal.sigwait(_SIGNALS) == signal.SIGUSR1:
        _say(f"FROZEN {_freeze_heap()}")
    server.stop()
    return 0


def _parse(argv: list[str]) -> tuple[list[str], tuple[str, str] | None]:
    """``PORT [NOTIFY_PORT]`` and the optional ``--iam REGION ACCOUNT``."""
    if "--iam" not in argv:
        return argv, None
    at = argv.index("--iam")
    region, account_id = argv[at + 1 : at + 3]
    return argv[:at] + argv[at + 3 :], (region, account_id)


_output = threading.Lock()


def _say(line: str) -> None:
    """One whole line on stdout (the credential reader answers from another thread)."""
    with _output:
        print(line, flush=True)


def _read_credentials(stream: IO[str], credentials: CredentialStore) -> None:
    """Apply the stack's credential changes from ``stream``; stop the process at its end."""
    for count, line in enumerate(stream, start=1):
        try:
            change = json.loads(line)
            if "put" in change:
                credentials.put(credential_from_dict(change["put"], "put"))
                credentials.purge_expired()
            elif "remove" in change:
                credentials.remove(str(change["remove"]))
            else:
                raise ValueError("neither put nor remove")
        except (ValueError, TypeError, CredentialFileError) as exc:
            _say(f"NACK {count} {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        _say(f"ACK {count}")
    # the stack is gone (or closed the pipe): stop as SIGTERM would
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)


_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGUSR1}


class _Notifier:
    """Sends the names of tables with new stream records, from a thread of its own.

    The request that added records only marks its table; writes that land while a datagram
    is being sent share the next one, so a burst of writes costs a few datagrams, not one
    each, and no request waits on the socket.
    """

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        threading.Thread(target=self._run, daemon=True, name="stream-notify").start()

    def notify(self, table_name: str) -> None:
        with self._lock:
            self._dirty.add(table_name)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                dirty, self._dirty = self._dirty, set()
            for table_name in dirty:
                # a lost wake-up only costs the pump one poll interval
                with contextlib.suppress(OSError):
                    self._socket.sendto(table_name.encode("utf-8"), self._target)


_frozen = False


def _freeze_heap() -> int:
    """Keep the heap that start-up built out of the cyclic collector's full passes, once.

    moto holds its service models and every table item as Python objects; a full collection
    walks all of them and stalls every request for 100+ ms (seen as a latency spike about
    12 s after start). The first call collects the garbage, then moves what survives (the
    deployed stack's models and resources) to the permanent generation; later calls change
    nothing, so garbage made later is collected as usual and nothing is kept for good by
    mistake. Returns the number of objects in the permanent generation.
    """
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
    return gc.get_freeze_count()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
