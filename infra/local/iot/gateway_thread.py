"""Run the gateway on its own event loop in a background thread.

Used by ``tidings demo``, the tests and the benchmarks, which drive real (blocking) clients
from the main thread while the gateway serves them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, Self, TypeVar

from infra.local.awsauth.credential_store import CredentialStore
from infra.local.awsauth.devices import DeviceDirectory
from infra.local.iot.gateway import Gateway, GatewayConfig
from infra.local.net.service import Service

__all__ = ["GatewayThread"]

T = TypeVar("T")


class GatewayThread(Service):
    """``with GatewayThread(config, store) as gw: ... gw.port ... gw.gateway ...``

    ``devices`` (with ``config.device_ca_file``) serves X.509 devices: MQTT over mutual TLS on
    ``config.mtls_port`` and with ALPN ``x-amzn-mqtt-ca`` on the main port.
    """

    name = "IoT gateway"

    def __init__(
        self,
        config: GatewayConfig,
        credentials: CredentialStore | None = None,
        devices: DeviceDirectory | None = None,
    ) -> None:
        self.config = config
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.devices = devices
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.gateway: Gateway | None = None
        """The running gateway (``None`` when stopped)."""

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the gateway's loop and wait for its result."""
        if self.loop is None:
            coroutine.close()
            raise self._not_running()
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Any, *args: Any) -> Any:
        """Call a plain function on the gateway's loop and wait for its result."""

        async def invoke() -> Any:
            return function(*args)

        return self.run(invoke())

    def start(self) -> Self:
        """Start the loop thread and the gateway on it; returns this service."""
        if self.loop is not None:
            raise RuntimeError(f"the {self.name} is already running")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway", daemon=True)
        self._thread.start()

        async def boot() -> Gateway:
            gateway = Gateway(self.config, self.credentials, devices=self.devices)
            await gateway.start()
            return gateway

        try:
            self.gateway = self.run(boot())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the gateway and the loop thread (idempotent)."""
        loop, thread = self.loop, self._thread
        if loop is None or thread is None:
            return
        if self.gateway is not None:
            self.run(self.gateway.stop())
            self.gateway = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self.loop, self._thread = None, None

    @property
    def ready(self) -> bool:
        """Whether the gateway serves."""
        return self.gateway is not None

    @property
    def port(self) -> int:
        """The port the gateway listens on."""
        if self.gateway is None:
            raise self._not_running()
        return self.gateway.port

    @property
    def mtls_port(self) -> int | None:
        """The port of MQTT over mutual TLS (``None``: not served)."""
        if self.gateway is None:
            raise self._not_running()
        return self.gateway.mtls_port
