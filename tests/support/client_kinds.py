"""The threaded and the async client behind one small interface, so that the guarantee tests
run unchanged on both.

:class:`AsyncDriver` runs an :class:`~client_sdk.AsyncTidings` on an event loop of its own
thread, as an asyncio application would, and consumes each subscription with
``async for change in sub`` into a :class:`~tests.support.recorder.Recorder`; the test thread
drives it through ``subscribe`` and reads ``state`` and ``stats``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from client_sdk import AsyncTidings, ClientOptions, SignIn, Tidings
from tests.support.recorder import Recorder

KINDS = ("threaded", "async")


class ClientUnderTest(Protocol):
    """What the guarantee tests use of a client."""

    @property
    def identity_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def stats(self) -> dict[str, int]: ...
    def subscribe(self, channel: str, recorder: Recorder, after: int | None = None) -> Any: ...


class _ReadsTheClient:
    """What both drivers read straight from their client."""

    @property
    def client(self) -> Tidings | AsyncTidings:
        raise NotImplementedError

    @property
    def identity_id(self) -> str:
        return self.client.identity_id

    @property
    def state(self) -> str:
        return self.client.state

    @property
    def stats(self) -> dict[str, int]:
        return self.client.stats


class ThreadedDriver(_ReadsTheClient):
    """The threaded client, its callbacks feeding the recorder."""

    def __init__(self, client: Tidings) -> None:
        self._threaded = client

    @property
    def client(self) -> Tidings:
        return self._threaded

    def subscribe(self, channel: str, recorder: Recorder, after: int | None = None) -> Any:
        return self.client.subscribe(
            channel, recorder.on_change, after=after, on_continuity_lost=recorder.on_lost
        )


class AsyncDriver(_ReadsTheClient):
    """An AsyncTidings on its own loop thread; ``async for`` feeds the recorder."""

    def __init__(self, api_url: str, sign_in: SignIn, options: ClientOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._client: AsyncTidings | None = None
        self._consumers: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(
            target=self._loop.run_until_complete,
            args=(self._main(api_url, sign_in, options),),
            name="test-async-app",
        )
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("the async client did not connect")
        if self._failure is not None:
            self._thread.join()
            raise self._failure

    async def _main(self, api_url: str, sign_in: SignIn, options: ClientOptions) -> None:
        self._stop = asyncio.Event()
        try:
            async with AsyncTidings.connect(api_url, sign_in, options=options) as client:
                self._client = client
                self._ready.set()
                await self._stop.wait()
                for consumer in self._consumers:
                    consumer.cancel()
        except BaseException as exc:
            self._failure = exc
            self._ready.set()

    @property
    def client(self) -> AsyncTidings:
        assert self._client is not None
        return self._client

    def subscribe(self, channel: str, recorder: Recorder, after: int | None = None) -> Any:
        async def subscribe() -> Any:
            subscription = await self.client.subscribe(
                channel, after=after, on_continuity_lost=recorder.on_lost, buffer=16
            )

            async def consume() -> None:
                async for change in subscription:
                    recorder.on_change(change)

            self._consumers.append(asyncio.get_running_loop().create_task(consume()))
            return subscription

        return asyncio.run_coroutine_threadsafe(subscribe(), self._loop).result(60)

    def close(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        self._loop.close()
        if self._failure is not None:
            raise self._failure


@contextmanager
def open_client(
    kind: str, api_url: str, sign_in: SignIn, options: ClientOptions
) -> Iterator[ClientUnderTest]:
    """A connected client of ``kind`` (``threaded`` or ``async``), closed on exit."""
    if kind == "threaded":
        with Tidings.connect(api_url, sign_in, options=options) as client:
            yield ThreadedDriver(client)
        return
    driver = AsyncDriver(api_url, sign_in, options)
    try:
        yield driver
    finally:
        driver.close()
