"""One lifecycle for every service of the local stack.

A service is built with its configuration and does nothing until :meth:`Service.start`, which
binds its port (``OSError`` names a busy one), serves in the background and returns the
service itself. :attr:`Service.port` is the port it listens on (the chosen one when it was
asked for port 0), :attr:`Service.ready` says whether it serves, and :meth:`Service.stop`
closes the port and ends its threads; stopping twice, or a service that never started, is
harmless. ``with service:`` starts and stops it.
"""

from __future__ import annotations

import abc
import socketserver
import threading
from typing import ClassVar, Self

__all__ = ["ServerThread", "Service"]


class Service(abc.ABC):
    """The lifecycle every local service follows: ``start() -> self``, ``port``, ``ready``,
    ``stop()``, and ``with``."""

    name: ClassVar[str] = "service"
    """Names the service in errors and thread names."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Bind the port and serve in the background; returns this service once it serves."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""

    @property
    @abc.abstractmethod
    def ready(self) -> bool:
        """Whether the service serves now."""

    @property
    @abc.abstractmethod
    def port(self) -> int:
        """The port it listens on; ``RuntimeError`` when it does not serve."""

    def _not_running(self) -> RuntimeError:
        return RuntimeError(f"the {self.name} is not running: start() it first")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerThread(Service):
    """A :class:`socketserver.BaseServer` served by one background thread.

    Subclasses say how to bind in :meth:`_bind`; everything else is here.
    """

    def __init__(self) -> None:
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @abc.abstractmethod
    def _bind(self) -> socketserver.BaseServer:
        """Create the server, bound to its port (not serving yet)."""

    def start(self) -> Self:
        """Bind and serve in a background thread; ``RuntimeError`` if it already runs."""
        with self._lock:
            if self._server is not None:
                raise RuntimeError(f"the {self.name} is already running")
            server = self._bind()
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.5}, name=self.name
            )
            thread.daemon = True
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving, close the port and wait for the serving thread (idempotent)."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=10)

    @property
    def ready(self) -> bool:
        """Whether the server is bound and served."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The port the server is bound to."""
        server = self._server
        if server is None:
            raise self._not_running()
        address = server.server_address
        assert isinstance(address, tuple)
        return int(address[1])
