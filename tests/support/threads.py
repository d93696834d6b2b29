"""Which Python threads a piece of code left running."""

from __future__ import annotations

import threading
import time

CLIENT_THREAD_MODULES = ("client_sdk", "AWSIoTPythonSDK", "awsiot", "awscrt")
STACK_THREAD_MODULES = ("infra", "socketserver", "asyncio")
"""The in-process local stack's servers (a request thread may wait on a keep-alive connection
of a function's boto3 client for as long as that client lives)."""


def python_threads() -> set[threading.Thread]:
    """The threads Python started. Native threads that once called into Python (awscrt's
    process-wide event loop, shared by every client) show up as dummy threads that never
    go away; they are not counted."""
    return {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def _module(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    return getattr(target, "__module__", "") or ""


def _is_clients(thread: threading.Thread) -> bool:
    return thread.name.startswith("tidings") or _module(thread).startswith(CLIENT_THREAD_MODULES)


def _is_stacks(thread: threading.Thread) -> bool:
    return not _is_clients(thread) and _module(thread).startswith(STACK_THREAD_MODULES)


def left_running(before: set[threading.Thread], settle_s: float = 5.0) -> list[str]:
    """The names of the threads running now that were not running at ``before``.

    A client's own threads (named ``tidings-...``, or running client or SDK code) count at
    once: ``close()`` must have joined them. The in-process local stack's server threads
    do not count; any other thread is given ``settle_s`` to end.
    """
    new = [t for t in python_threads() - before if t.is_alive() and not _is_stacks(t)]
    clients = sorted(t.name for t in new if _is_clients(t))
    if clients:
        return clients
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        new = [t for t in new if t.is_alive()]
        if not new:
            return []
        time.sleep(0.05)
    return sorted(t.name for t in new if t.is_alive())
