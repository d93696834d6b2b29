"""Run the gateway on its own event loop in a background thread.

Used by ``tidings demo``, the tests and the benchmarks, which drive real (blocking) clients
from the main thread while the gateway serves them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from infra.local.credential_store import CredentialStore
from infra.local.gateway import Gateway, GatewayConfig

__all__ = ["GatewayThread"]

T = TypeVar("T")


class GatewayThread:
    """``with GatewayThread(config, store) as gw: ... gw.port ...``"""

    def __init__(self, config: GatewayConfig, credentials: CredentialStore | None = None) -> None:
        self.config = config
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self.gateway: Gateway | None = None

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the gateway's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Any, *args: Any) -> Any:
        """Call a plain function on the gateway's loop and wait for its result."""

        async def invoke() -> Any:
            return function(*args)

        return self.run(invoke())

    def start(self) -> Gateway:
        """Start the loop thread and the gateway; returns the running gateway."""
        self._thread.start()

        async def boot() -> Gateway:
            gateway = Gateway(self.config, self.credentials)
            await gateway.start()
            return gateway

        self.gateway = self.run(boot())
        return self.gateway

    def stop(self) -> None:
        """Stop the gateway and the loop thread."""
        if self.gateway is not None:
            self.run(self.gateway.stop())
            self.gateway = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()

    @property
    def port(self) -> int:
        """The port the gateway listens on."""
        assert self.gateway is not None
        return self.gateway.port

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
