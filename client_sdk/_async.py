"""The async client: ``async with AsyncTidings.connect(api_url, Password(...)) as t``.

It runs on the caller's event loop: iteration, callbacks and ``on_state`` happen there. The
connection itself stays on the threaded core (the control loop, the transports and the
workers are threads, as for :class:`~client_sdk.Tidings`), and so do the guarantees: each
channel's changes once and in ``seq`` order, gaps filled, continuity losses reported.

Each subscription bridges its channel's delivery thread to the loop through a bounded buffer
(``buffer`` changes). When the consumer falls behind and the buffer is full, that channel's
delivery thread waits; once ``max_buffered_changes`` more are waiting the client stops taking
the channel's pushes and later reads them from the change log. A slow consumer slows its own
channel only; nothing is dropped or reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import replace
from typing import Any, Self

from client_sdk._client import Tidings
from client_sdk._core import ChannelState
from client_sdk._delivery import Item, cursor_after
from client_sdk._envelope import Change, ContinuityLost
from client_sdk._errors import ClientClosed, ContinuityBroken
from client_sdk._options import ClientOptions
from client_sdk._signin import SignIn
from client_sdk._state import ConnectionState

__all__ = ["AsyncSubscription", "AsyncTidings"]

log = logging.getLogger("tidings.client")

AsyncOnChange = Callable[[Change], Awaitable[None] | None]
AsyncOnLost = Callable[[str, ContinuityLost], Awaitable[None] | None]

DEFAULT_BUFFER = 100


class _Bridge:
    """A channel's delivery thread → the event loop, at most ``limit`` items in between."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        if limit < 1:
            raise ValueError("buffer must be at least 1")
        self._loop = loop
        self._limit = limit
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closed = False
        self._items: deque[Item] = deque()  # touched on the loop only
        self._waiter: asyncio.Future[None] | None = None

    def put(self, item: Item) -> None:
        """On the delivery thread: wait for room (back-pressure), then pass ``item`` on."""
        with self._cond:
            while self._in_flight >= self._limit and not self._closed:
                self._cond.wait()
            if self._closed:
                return
            self._in_flight += 1
        try:
            self._loop.call_soon_threadsafe(self._arrived, item)
        except RuntimeError:  # the loop is closed: nobody will read
            self.close()

    @property
    def full(self) -> bool:
        """True while ``buffer`` items wait for the consumer."""
        with self._cond:
            return self._in_flight >= self._limit

    @property
    def empty(self) -> bool:
        """True when no item waits on the loop (loop only)."""
        return not self._items

    def _arrived(self, item: Item) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Item | None:
        """On the loop: the next item, or None once closed."""
        while not self._items:
            if self._closed:
                return None
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()
        return item

    def close(self) -> None:
        """Stop: a waiting delivery thread returns, a waiting reader gets None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

        def wake() -> None:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        with contextlib.suppress(RuntimeError):  # a closed loop has no reader to wake
            self._loop.call_soon_threadsafe(wake)


async def _call(function: Callable[..., Any], *args: Any) -> None:
    result = function(*args)
    if inspect.isawaitable(result):
        await result


class AsyncSubscription:
    """One channel's subscription on the event loop.

    Without ``on_change`` it is an async iterator: ``async for change in sub``. A
    continuity loss then raises :class:`ContinuityBroken` from the iteration unless
    ``on_continuity_lost`` was given; the subscription stays open, so the application can
    reload and iterate again. Close it with ``await sub.aclose()`` or ``async with sub``.
    """

    def __init__(
        self,
        client: AsyncTidings,
        state: ChannelState,
        bridge: _Bridge,
        on_change: AsyncOnChange | None,
        on_lost: AsyncOnLost | None,
        cursor: int,
        epoch: int | None,
    ) -> None:
        self._client = client
        self._state = state
        self._bridge = bridge
        self._on_change = on_change
        self._on_lost = on_lost
        self._cursor = cursor
        self._epoch = epoch
        self._closed = False
        self._in_callback = False
        self._task: asyncio.Task[None] | None = None
        if on_change is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._feed(on_change), name=f"tidings {state.name}"
            )

    @property
    def channel(self) -> str:
        """The channel name (``users/me/...`` expanded to the identity's id)."""
        return self._state.name

    @property
    def cursor(self) -> int:
        """The last ``seq`` the application got (its ``on_change`` returned, or the
        iteration yielded it); the start before the first."""
        return self._cursor

    @property
    def epoch(self) -> int | None:
        """The channel's epoch as of the last delivery."""
        return self._epoch

    @property
    def closed(self) -> bool:
        """True once closed (by :meth:`aclose` or the client's)."""
        return self._closed or self._state.closed

    async def _next_item(self) -> Item | None:
        item = await self._bridge.get()
        if item is not None:
            self._cursor, self._epoch = cursor_after(item, self._cursor, self._epoch)
        return item

    @property
    def _idle(self) -> bool:
        """No change waits on the loop and no callback runs (loop only)."""
        return self._bridge.empty and not self._in_callback

    async def _feed(self, on_change: AsyncOnChange) -> None:
        while True:
            item = await self._bridge.get()
            if item is None:
                return
            self._in_callback = True
            try:
                if isinstance(item, ContinuityLost):
                    if self._on_lost is not None:
                        await _call(self._on_lost, self.channel, item)
                else:
                    await _call(on_change, item)
            except Exception:
                log.exception("a tidings callback (%s) raised", self.channel)
            finally:
                self._in_callback = False
            self._cursor, self._epoch = cursor_after(item, self._cursor, self._epoch)

    def __aiter__(self) -> AsyncSubscription:
        if self._on_change is not None:
            raise TypeError("this subscription delivers to its on_change callback")
        return self

    async def __anext__(self) -> Change:
        while True:
            item = await self._next_item()
            if item is None:
                raise StopAsyncIteration
            if not isinstance(item, ContinuityLost):
                return item
            if self._on_lost is None:
                raise ContinuityBroken(self.channel, item)
            await _call(self._on_lost, self.channel, item)

    async def aclose(self) -> None:
        """Stop receiving this channel (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._bridge.close()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._client._forget(self)
        await asyncio.to_thread(self._client._core.unsubscribe, self._state)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"cursor={self.cursor}"
        return f"<AsyncSubscription {self.channel} {state}>"


class _Connecting:
    """What :meth:`AsyncTidings.connect` returns: await it, or ``async with`` it."""

    def __init__(self, api_url: str, sign_in: SignIn, options: ClientOptions | None) -> None:
        self._api_url = api_url
        self._sign_in = sign_in
        self._options = options
        self._client: AsyncTidings | None = None

    def __await__(self) -> Generator[Any, None, AsyncTidings]:
        return self._connect().__await__()

    async def __aenter__(self) -> AsyncTidings:
        self._client = await self._connect()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _connect(self) -> AsyncTidings:
        loop = asyncio.get_running_loop()
        options = self._options if self._options is not None else ClientOptions.from_env()
        on_state = options.on_state
        if on_state is not None:
            options = replace(options, on_state=_on_loop(loop, on_state))
        api_url, sign_in = self._api_url, self._sign_in
        client = await _in_thread(lambda: Tidings.connect(api_url, sign_in, options=options))
        return AsyncTidings(client)


def _on_loop(
    loop: asyncio.AbstractEventLoop, on_state: Callable[[ConnectionState], Any]
) -> Callable[[ConnectionState], None]:
    """``on_state`` called on ``loop`` (a coroutine function's result becomes a task)."""

    def call(state: ConnectionState) -> None:
        result = on_state(state)
        if inspect.isawaitable(result):
            loop.create_task(_await(result))

    def from_thread(state: ConnectionState) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(call, state)

    return from_thread


async def _await(awaitable: Awaitable[Any]) -> None:
    await awaitable


async def _in_thread(connect: Callable[[], Tidings]) -> Tidings:
    """Run the blocking ``connect`` in a thread; a cancelled wait closes what it made."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Tidings] = loop.create_future()

    def settle(client: Tidings | None, error: BaseException | None) -> None:
        if done.cancelled():
            if client is not None:
                threading.Thread(target=client.close, name="tidings-close").start()
        elif error is not None:
            done.set_exception(error)
        else:
            done.set_result(client)  # type: ignore[arg-type]

    def run() -> None:
        try:
            client = connect()
        except BaseException as exc:
            error: BaseException | None = exc
            client = None
        else:
            error = None
        try:
            loop.call_soon_threadsafe(settle, client, error)
        except RuntimeError:  # the loop is gone
            if client is not None:
                client.close()

    thread = threading.Thread(target=run, name="tidings-connect", daemon=True)
    thread.start()
    client = await done
    thread.join()  # it is past its last step
    return client


class AsyncTidings:
    """A signed-in, connected async client. Create it with :meth:`connect`:

    ``async with AsyncTidings.connect(api_url, Password("ann", "...")) as t:`` or
    ``t = await AsyncTidings.connect(...)`` (then ``await t.aclose()``).
    """

    def __init__(self, client: Tidings) -> None:
        """Internal: :meth:`connect` builds the client."""
        self._client = client
        self._core = client._core
        self._subscriptions: set[AsyncSubscription] = set()

    @classmethod
    def connect(
        cls, api_url: str, sign_in: SignIn, *, options: ClientOptions | None = None
    ) -> _Connecting:
        """Sign in and connect without blocking the event loop.

        The same arguments, errors and guarantees as :meth:`Tidings.connect`;
        ``options.on_state`` is called on the event loop.
        """
        return _Connecting(api_url, sign_in, options)

    @property
    def identity_id(self) -> str:
        """The signed-in Cognito identity."""
        return self._client.identity_id

    @property
    def readable_channels(self) -> tuple[str, ...]:
        """The channels sign-in said this identity may read."""
        return self._client.readable_channels

    @property
    def options(self) -> ClientOptions:
        """The options the client runs with."""
        return self._client.options

    @property
    def state(self) -> ConnectionState:
        """The connection state (see :class:`ConnectionState`)."""
        return self._client.state

    @property
    def stats(self) -> dict[str, int]:
        """Counters (a snapshot); see :attr:`Tidings.stats`."""
        return self._client.stats

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` was called."""
        return self._client.closed

    async def subscribe(
        self,
        channel: str,
        on_change: AsyncOnChange | None = None,
        *,
        after: int | None = None,
        on_continuity_lost: AsyncOnLost | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> AsyncSubscription:
        """Receive ``channel``'s changes, each once and in order.

        With ``on_change`` (a function or a coroutine function, called on the event loop
        and awaited, one change at a time) the changes go there; without it, iterate the
        subscription: ``async for change in sub``. ``after`` as for
        :meth:`Tidings.subscribe`. At most ``buffer`` changes wait between the connection
        and the consumer. Raises :class:`AccessDenied` for a channel the identity may not
        read.
        """
        if self.closed:
            raise ClientClosed("the client is closed")
        loop = asyncio.get_running_loop()
        bridge = _Bridge(loop, buffer)
        state = await asyncio.to_thread(self._core.subscribe, channel, bridge.put, after)
        subscription = AsyncSubscription(
            self,
            state,
            bridge,
            on_change,
            on_continuity_lost,
            state.delivery.cursor,
            state.delivery.epoch,
        )
        self._subscriptions.add(subscription)
        return subscription

    async def changes(
        self,
        channel: str,
        *,
        after: int | None = None,
        on_continuity_lost: AsyncOnLost | None = None,
        buffer: int = DEFAULT_BUFFER,
    ) -> AsyncIterator[Change]:
        """``async for change in t.changes("public/scores", after=41)``: subscribe, yield
        each change once and in order, and close the subscription when the loop ends.

        Without ``on_continuity_lost`` a continuity loss raises :class:`ContinuityBroken`.
        """
        subscription = await self.subscribe(
            channel, after=after, on_continuity_lost=on_continuity_lost, buffer=buffer
        )
        try:
            async for change in subscription:
                yield change
        finally:
            await subscription.aclose()

    def _forget(self, subscription: AsyncSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def aclose(self) -> None:
        """Disconnect, stop every timer and thread, and join them. Idempotent."""
        for subscription in list(self._subscriptions):
            subscription._closed = True
            subscription._bridge.close()
            if subscription._task is not None:
                subscription._task.cancel()
        self._subscriptions.clear()
        if not self._client.closed:
            await asyncio.to_thread(self._client.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncTidings {self.identity_id} {self.state.value}>"
