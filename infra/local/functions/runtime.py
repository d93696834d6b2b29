"""Running the repository's Lambda handlers locally, each in its own worker processes.

A function runs as on AWS: its own process with the environment variables the template gives
it and the credentials of its execution role (so the local services enforce the role's
policies), invoked with a JSON event and answering with a JSON result. A :class:`FunctionPool`
keeps warm workers and starts more when invocations overlap (a long-poll holds a worker for
its whole wait, as on AWS).

Concurrency is limited as Lambda limits it. A function with reserved concurrency runs at most
that many invocations at once; functions without one share the account's unreserved pool
(a :class:`ConcurrencyLimit` given to each of their pools). An invocation beyond its limit is
not queued: it fails at once with ``TooManyRequestsException``, as Lambda throttles a
synchronous invoke (the caller decides: API Gateway answers its integration-failure
response, an event source mapping retries the batch later).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra import data_files
from infra.local.functions.worker import READY_LINE

__all__ = ["THROTTLED", "ConcurrencyLimit", "FunctionError", "FunctionPool", "FunctionSpec"]

ROOT = data_files.code_root()
"""Lambda's ``/var/task``: the functions run here, so the template's relative paths (its
``TIDINGS_ROUTES_FILE``) name the files the deployed package holds."""
INIT_TIMEOUT_S = 120.0
"""How long a worker may take to import its handler (AWS allows 10 s on its hardware)."""
THROTTLED = "TooManyRequestsException"
"""``FunctionError.error_type`` of an invocation refused for lack of concurrency."""


class FunctionError(RuntimeError):
    """The handler raised, timed out, or its worker died, or the invocation was throttled
    (``error_type`` :data:`THROTTLED`: the function never ran); the message says which."""

    def __init__(self, function: str, error_type: str, message: str) -> None:
        super().__init__(f"{function}: {error_type}: {message}")
        self.function = function
        self.error_type = error_type
        self.message = message


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about a function."""

    name: str
    handler: str  # "package.module.function"
    environment: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 30.0
    memory_mb: int = 256
    max_concurrency: int = 8
    """The function's reserved concurrency; used when its pool is given no shared limit."""


class ConcurrencyLimit:
    """Executions in flight against a limit; :meth:`try_acquire` never waits (Lambda throttles).

    One per function with reserved concurrency, and one (the account's unreserved pool)
    shared by every function without.
    """

    def __init__(self, limit: int, name: str = "its reserved concurrency") -> None:
        """``name`` says which limit it is in a throttle's message."""
        if limit < 0:
            raise ValueError("a concurrency limit cannot be negative")
        self.limit = limit
        self.name = name
        self._in_use = 0
        self._lock = threading.Lock()
        self.throttles = 0

    @property
    def in_use(self) -> int:
        """Executions running now."""
        return self._in_use

    def try_acquire(self) -> bool:
        """Take one execution if one is free; False (and a throttle counted) otherwise."""
        with self._lock:
            if self._in_use >= self.limit:
                self.throttles += 1
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        """Give back an execution taken with :meth:`try_acquire`."""
        with self._lock:
            self._in_use -= 1


class _Worker:
    def __init__(self, spec: FunctionSpec, env: Mapping[str, str], log: Any = None) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.local.functions.worker",
                spec.handler,
                spec.name,
                str(spec.timeout_s),
                str(spec.memory_mb),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=ROOT,
            env=dict(env),
            text=True,
            bufsize=1,
        )
        self.initialised = False

    def _initialised(self) -> dict[str, Any] | None:
        """Wait for the init phase to end; an error answer if it fails or takes too long.

        As on AWS, the init phase (importing the handler) is not part of the function's
        timeout; it has its own limit, generous here because a laptop may start many
        workers at once on few cores.
        """
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], INIT_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        if line == READY_LINE:
            self.initialised = True
            return None
        self.kill()
        if not ready:
            return {"errorType": "Runtime.InitTimeout", "errorMessage": "init took too long"}
        return {"errorType": "Runtime.InitError", "errorMessage": "the handler failed to load"}

    def invoke(self, event: Any, timeout_s: float) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if not self.initialised:
            failed = self._initialised()
            if failed is not None:
                return failed
        request_id = str(uuid.uuid4())
        self.process.stdin.write(json.dumps({"id": request_id, "event": event}) + "\n")
        self.process.stdin.flush()
        # the worker answers with one line; wait for its first byte at most the timeout
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s + 2.0)
        if not ready:
            self.kill()
            return {"errorType": "Timeout", "errorMessage": f"timed out after {timeout_s} s"}
        line = self.process.stdout.readline()
        try:
            answer: dict[str, Any] = json.loads(line)
        except ValueError:
            answer = {}
        if not line or not isinstance(answer, dict) or not answer:
            self.kill()
            return {"errorType": "WorkerDied", "errorMessage": "the function's process exited"}
        return answer

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=5)


class FunctionPool:
    """Warm workers for one function; :meth:`invoke` is thread-safe."""

    def __init__(
        self,
        spec: FunctionSpec,
        base_env: Mapping[str, str] | None = None,
        *,
        log: Any = None,
        concurrency: ConcurrencyLimit | None = None,
    ) -> None:
        """``log``: an open file for the workers' logs (default: this process's stderr);
        ``concurrency``: the limit this function's invocations count against (default: its
        own, ``spec.max_concurrency``, like a reservation)."""
        self._log = log
        self.spec = spec
        self.concurrency = concurrency or ConcurrencyLimit(spec.max_concurrency)
        env = dict(os.environ if base_env is None else base_env)
        env.update(spec.environment)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["AWS_LAMBDA_FUNCTION_NAME"] = spec.name
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(spec.memory_mb)
        self.env = env
        self._idle: list[_Worker] = []
        self._busy = 0
        self._lock = threading.Condition()
        self._closed = False
        self.invocations = 0
        self.cold_starts = 0

    def warm(self) -> None:
        """Start one worker ahead of the first invocation."""
        with self._lock:
            if not self._idle:
                self._idle.append(_Worker(self.spec, self.env, self._log))
                self.cold_starts += 1

    def invoke(self, event: Any) -> Any:
        """Run the handler on ``event``; returns its result or raises :class:`FunctionError`."""
        worker = self._acquire()
        started = time.monotonic()
        try:
            outcome = worker.invoke(event, self.spec.timeout_s)
        finally:
            self._release(worker)
        self.invocations += 1
        if "errorType" in outcome:
            raise FunctionError(
                self.spec.name, outcome["errorType"], outcome.get("errorMessage", "")
            )
        outcome["durationMs"] = (time.monotonic() - started) * 1000
        return outcome.get("result")

    def _acquire(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise FunctionError(self.spec.name, "Shutdown", "the local stack is stopping")
            if not self.concurrency.try_acquire():
                limit = self.concurrency
                raise FunctionError(
                    self.spec.name,
                    THROTTLED,
                    f"Rate Exceeded: all of {limit.name} ({limit.limit}) is in use",
                )
            self._busy += 1
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
            self.cold_starts += 1
        try:
            return _Worker(self.spec, self.env, self._log)  # a cold start, outside the lock
        except BaseException:
            self._release(None)
            raise

    def _release(self, worker: _Worker | None) -> None:
        with self._lock:
            self._busy -= 1
            self.concurrency.release()
            if worker is None or not worker.alive():
                return
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()  # the pool closed while it ran

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._lock.notify_all()
        for worker in idle:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
            try:
                worker.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                worker.kill()
