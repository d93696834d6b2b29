"""An in-memory Tidings for application tests: no stack, no network, the real client.

:class:`InMemoryTidings` *is* a :class:`~client_sdk.Tidings`: the same ``subscribe``,
``state``, ``close`` and guarantees, run by the real client (ordering, delivery threads,
catch-up, continuity) over an in-memory stand-in for the stack. The test drives the stand-in:

* ``publish(channel, new)`` — a change happens on ``channel``; returns once every
  subscription of the channel has handed it to its callback (``settle()``);
* ``cut_connection()`` / ``restore_connection()`` — the push connection drops and comes back;
  changes published in between arrive after the reconnect, once and in order (after
  ``fallback_after_s`` the client polls the in-memory API, as it would the real one);
* ``expire_cursor(channel)`` — the channel's change log forgets what the client has not read
  yet: ``on_continuity_lost(channel, ContinuityLost(head, epoch, "cursor_expired"))``;
* ``refuse(channel)`` — the identity may no longer read ``channel``: ``subscribe`` raises
  :class:`~client_sdk.AccessDenied`; an open subscription gets ``on_continuity_lost`` with
  reason ``access_denied``.

With ``ClientOptions(transport="poll")`` the client polls the in-memory API and never opens
a push connection; ``publish`` then has the channel read at once rather than after
``poll_interval_s``, so a test does not wait for the interval.

An application's own code takes the client as an argument, so its tests hand it an
``InMemoryTidings`` instead of a connected ``Tidings``::

    from client_sdk.testing import InMemoryTidings

    def test_the_todo_list_follows_the_channel():
        with InMemoryTidings() as tidings:
            todos = TodoList(tidings)            # subscribes to users/me/todos
            tidings.publish("users/me/todos", {"id": "t1", "title": "milk"})
            assert todos.titles() == ["milk"]

:class:`InMemoryAsyncTidings` is the same for :class:`~client_sdk.AsyncTidings` (create it
inside a running event loop; ``await t.publish(...)``, ``await t.settle()``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from client_sdk._async import AsyncSubscription, AsyncTidings, _on_loop
from client_sdk._client import Tidings
from client_sdk._core import ChannelState, ClientCore
from client_sdk._envelope import Change
from client_sdk._errors import AccessDenied, ClientClosed, CursorExpired, SignInFailed
from client_sdk._options import ClientOptions
from client_sdk._transport import PushTransport, TransportEvents

__all__ = ["InMemoryAsyncTidings", "InMemoryStack", "InMemoryTidings"]

TOPIC_PREFIX = "tidings/test/"
DEFAULT_IDENTITY = "local:00000000-0000-4000-8000-000000000001"
SETTLE_TIMEOUT_S = 5.0


@dataclass
class _Log:
    head: int = 0
    epoch: int = 1
    first_kept: int = 1  # seqs below are past the retention
    changes: list[Change] = field(default_factory=list)


class _InMemoryTransport:
    """A push connection to the in-memory stack."""

    def __init__(self, stack: InMemoryStack, events: TransportEvents) -> None:
        self.client_id = f"{stack.identity_id}-{uuid.uuid4().hex[:12]}"
        self._stack = stack
        self.events = events
        self.topics: set[str] = set()
        self.connected = False
        self.stopped = False

    def start(self) -> None:
        self._stack._attach(self)

    def subscribe(self, topic: str) -> None:
        self._stack._check_readable(topic[len(TOPIC_PREFIX) :])
        self.topics.add(topic)

    def unsubscribe(self, topic: str) -> None:
        self.topics.discard(topic)

    def stop(self) -> None:
        self.stopped = True
        self._stack._detach(self)


class InMemoryStack:
    """The stack as the client sees it, in memory: sign-in's answer, change logs, the
    channels API (with long-polls) and the push connection. Thread-safe."""

    def __init__(
        self, identity_id: str = DEFAULT_IDENTITY, readable: Iterable[str] | None = None
    ) -> None:
        self.identity_id = identity_id
        self.thing_name: str | None = None
        self.connection_expires = True
        self.push_may_miss = False
        self.topic_prefix = TOPIC_PREFIX
        self.readable_channels: tuple[str, ...] = tuple(
            readable if readable is not None else (f"users/{identity_id}/todos",)
        )
        self._cond = threading.Condition()
        self._logs: dict[str, _Log] = {}
        self._refused: set[str] = set()
        self._transports: list[_InMemoryTransport] = []
        self._connected = True
        self._closed = False
        self._waits: list[tuple[str, int]] = []  # long-polls waiting: (channel, after)
        self._api_calls = 0

    # ------------------------------------------------------------------ the test's controls
    def publish(
        self,
        channel: str,
        new: Mapping[str, Any] | None,
        *,
        op: Literal["insert", "modify", "remove"] | None = None,
        keys: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        push: bool = True,
    ) -> Change:
        """Append a change to ``channel``'s log and push it to connected subscribers."""
        with self._cond:
            log = self._logs.setdefault(channel, _Log())
            log.head += 1
            change: Change = {
                "v": 1,
                "channel": channel,
                "seq": log.head,
                "epoch": log.epoch,
                "id": uuid.uuid4().hex,
                "op": op or ("remove" if new is None else "insert"),
                "keys": dict(keys or {}),
                "new": dict(new) if new is not None else None,
                "at": int(time.time() * 1000),
            }
            if old is not None:
                change["old"] = dict(old)
            change = json.loads(json.dumps(change))  # as the wire gives it: plain JSON
            log.changes.append(change)
            self._cond.notify_all()
            receivers = []
            if push and self._connected and channel not in self._refused:
                topic = TOPIC_PREFIX + channel
                receivers = [t for t in self._transports if t.connected and topic in t.topics]
        payload = json.dumps(change).encode()
        for transport in receivers:
            transport.events.on_message(TOPIC_PREFIX + channel, payload)
        return change

    def forget_up_to_head(self, channel: str) -> None:
        """The retention passes: everything logged on ``channel`` so far is forgotten."""
        with self._cond:
            log = self._logs.setdefault(channel, _Log())
            log.first_kept = log.head + 1
            log.changes = []

    def refuse(self, channel: str) -> None:
        """The identity may no longer read ``channel``."""
        with self._cond:
            self._refused.add(channel)
            self._cond.notify_all()

    def cut_connection(self) -> None:
        """Drop the push connection; it stays down until :meth:`restore_connection`."""
        with self._cond:
            self._connected = False
            dropped = [t for t in self._transports if t.connected]
            for transport in dropped:
                transport.connected = False
                transport.topics.clear()  # a clean session: subscriptions go with it
        for transport in dropped:
            transport.events.on_disconnected(transport, "cut by the test")

    def restore_connection(self) -> None:
        """Let the push connection back up (the client reconnects and catches up)."""
        with self._cond:
            self._connected = True
            waiting = [t for t in self._transports if not t.connected and not t.stopped]
            for transport in waiting:
                transport.connected = True
        for transport in waiting:
            transport.events.on_connected(transport)

    def parked(self) -> int:
        """Long-polls waiting with nothing to answer yet."""
        with self._cond:
            return sum(1 for channel, after in self._waits if not self._has_news(channel, after))

    # ------------------------------------------------------------------ the client's side
    def _attach(self, transport: _InMemoryTransport) -> None:
        with self._cond:
            self._transports.append(transport)
            up = self._connected and not self._closed
            transport.connected = up
        if up:
            transport.events.on_connected(transport)

    def _detach(self, transport: _InMemoryTransport) -> None:
        with self._cond:
            transport.connected = False
            if transport in self._transports:
                self._transports.remove(transport)

    def _check_readable(self, channel: str) -> None:
        with self._cond:
            if channel in self._refused:
                raise AccessDenied(f"not allowed to read {channel}")

    def _has_news(self, channel: str, after: int) -> bool:
        log = self._logs.get(channel)
        return self._closed or channel in self._refused or (log is not None and log.head > after)

    def head(self, channel: str) -> dict[str, Any]:
        """``{"channel", "head", "epoch"}``."""
        with self._cond:
            self._api_calls += 1
            self._check_readable(channel)
            log = self._logs.get(channel) or _Log()
            return {"channel": channel, "head": log.head, "epoch": log.epoch}

    def changes(
        self, channel: str, after: int, limit: int, wait: float, epoch: int | None
    ) -> dict[str, Any]:
        """The changes after ``after``, as the channels API answers (long-polls ``wait``)."""
        with self._cond:
            self._api_calls += 1
            if wait > 0 and not self._has_news(channel, after):
                entry = (channel, after)
                self._waits.append(entry)
                try:
                    self._cond.wait_for(lambda: self._has_news(channel, after), wait)
                finally:
                    self._waits.remove(entry)
            if self._closed:
                raise ClientClosed("the in-memory stack is closed")
            self._check_readable(channel)
            log = self._logs.get(channel) or _Log()
            if (epoch is not None and epoch != log.epoch) or after > log.head:
                raise CursorExpired("reload from the head", log.head, log.epoch)
            if after < log.head and after + 1 < log.first_kept:
                raise CursorExpired(
                    f"the changes after {after} on {channel} are older than the retention",
                    log.head,
                    log.epoch,
                )
            page = [c for c in log.changes if c["seq"] > after][:limit]
            last = page[-1]["seq"] if page else after
            return {
                "channel": channel,
                "epoch": log.epoch,
                "head": log.head,
                "changes": page,
                "next": last,
                "more": last < log.head,
            }

    def new_transport(self, events: TransportEvents) -> PushTransport:
        """A push connection to this stack."""
        return _InMemoryTransport(self, events)

    def refused(self) -> SignInFailed | None:
        """Signing in is never refused here."""
        return None

    def counters(self) -> dict[str, int]:
        """One sign-in, one credential fetch, and the API calls so far."""
        return {"logins": 1, "credential_refreshes": 1, "api_calls": self._api_calls}

    def close(self) -> None:
        """End the long-polls under way."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class InMemoryTidings(Tidings):
    """A :class:`~client_sdk.Tidings` over an in-memory stack, for application tests.

    ``identity_id`` is who is signed in (``users/me/...`` expands to it); ``readable``
    the channels sign-in reports (any channel may be read unless :meth:`refuse` d);
    ``options`` as for ``Tidings.connect`` (``ClientOptions()`` by default: nothing is read
    from the environment).
    """

    def __init__(
        self,
        *,
        identity_id: str = DEFAULT_IDENTITY,
        readable: Iterable[str] | None = None,
        options: ClientOptions | None = None,
    ) -> None:
        self.stack = InMemoryStack(identity_id, readable)
        """The in-memory stack (its controls are also this client's methods)."""
        core = ClientCore(self.stack, options if options is not None else ClientOptions())
        try:
            core.start()
            core.wait_connected(core.options.connect_timeout_s)
        except BaseException:
            core.close()
            raise
        super().__init__(core)

    def publish(
        self,
        channel: str,
        new: Mapping[str, Any] | None = None,
        *,
        op: Literal["insert", "modify", "remove"] | None = None,
        keys: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
        wait: bool = True,
    ) -> Change:
        """A change happens on ``channel`` (``users/me/...`` allowed): ``new`` is the item
        after it (None: a removal). Returns the change, once the client has delivered it
        (``wait=False``: at once; call that from a callback)."""
        name = self._core.expand(channel)
        change = self.stack.publish(name, new, op=op, keys=keys, old=old)
        if self._core.mode == "poll":
            self._core.read_now(name)  # the next poll, without waiting poll_interval_s
        if wait:
            self.settle()
        return change

    def cut_connection(self) -> None:
        """The push connection drops and stays down until :meth:`restore_connection`."""
        self.stack.cut_connection()
        self.settle()

    def restore_connection(self) -> None:
        """The push connection comes back; returns once the client has caught up."""
        self.stack.restore_connection()
        self.settle()

    def expire_cursor(self, channel: str, *, missed: int = 1) -> None:
        """``missed`` changes happen on ``channel`` that the client never gets, and the
        change log forgets them (they are older than the retention by the time the client
        reads): the subscription's ``on_continuity_lost`` is called with reason
        ``cursor_expired`` and the head, and it goes on from there."""
        name = self._core.expand(channel)
        self.settle()  # what was published before is delivered, not lost
        for _ in range(missed):
            self.stack.publish(name, {"expired": True}, push=False)
        self.stack.forget_up_to_head(name)
        self._core.read_now(name)
        self.settle()

    def refuse(self, channel: str) -> None:
        """The identity may no longer read ``channel``: ``subscribe`` raises
        :class:`~client_sdk.AccessDenied`; an open subscription's ``on_continuity_lost``
        is called with reason ``access_denied`` and nothing more arrives."""
        name = self._core.expand(channel)
        self.settle()
        self.stack.refuse(name)
        self._core.read_now(name)
        self.settle()

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Wait until the client has nothing left to do: every change published so far is
        delivered (or waits for the connection), every callback has returned."""
        self._settle(timeout)

    def _settle(self, timeout: float, excused: Any = None) -> None:
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 2:  # quiet twice in a row, a little apart
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the client did not settle in {timeout:g} s: is a callback blocked, "
                    "or was publish() called from a callback without wait=False?"
                )
            quiet = self._core.quiet(self.stack.parked(), excused)
            calm = calm + 1 if quiet else 0
            time.sleep(0.005)


class InMemoryAsyncTidings(AsyncTidings):
    """An :class:`~client_sdk.AsyncTidings` over an in-memory stack; create it inside a
    running event loop (``async with InMemoryAsyncTidings() as t``)."""

    def __init__(
        self,
        *,
        identity_id: str = DEFAULT_IDENTITY,
        readable: Iterable[str] | None = None,
        options: ClientOptions | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        chosen = options if options is not None else ClientOptions()
        if chosen.on_state is not None:
            chosen = replace(chosen, on_state=_on_loop(loop, chosen.on_state))
        self.memory = InMemoryTidings(identity_id=identity_id, readable=readable, options=chosen)
        """The threaded in-memory client underneath (its stack: ``memory.stack``)."""
        super().__init__(self.memory)

    async def publish(
        self,
        channel: str,
        new: Mapping[str, Any] | None = None,
        *,
        op: Literal["insert", "modify", "remove"] | None = None,
        keys: Mapping[str, Any] | None = None,
        old: Mapping[str, Any] | None = None,
    ) -> Change:
        """As :meth:`InMemoryTidings.publish`; returns once delivered (see :meth:`settle`)."""
        change = self.memory.publish(channel, new, op=op, keys=keys, old=old, wait=False)
        await self.settle()
        return change

    async def cut_connection(self) -> None:
        """As :meth:`InMemoryTidings.cut_connection`."""
        self.memory.stack.cut_connection()
        await self.settle()

    async def restore_connection(self) -> None:
        """As :meth:`InMemoryTidings.restore_connection`."""
        self.memory.stack.restore_connection()
        await self.settle()

    async def expire_cursor(self, channel: str, *, missed: int = 1) -> None:
        """As :meth:`InMemoryTidings.expire_cursor`."""
        name = self._core.expand(channel)
        await self.settle()
        for _ in range(missed):
            self.memory.stack.publish(name, {"expired": True}, push=False)
        self.memory.stack.forget_up_to_head(name)
        self._core.read_now(name)
        await self.settle()

    async def refuse(self, channel: str) -> None:
        """As :meth:`InMemoryTidings.refuse`."""
        name = self._core.expand(channel)
        await self.settle()
        self.memory.stack.refuse(name)
        self._core.read_now(name)
        await self.settle()

    async def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Wait until the client has nothing left to do and every ``on_change`` callback
        has returned. Changes for ``async for`` wait in the subscription until the test
        iterates (a full ``buffer`` is not waited for)."""
        subscriptions = {s._state: s for s in self._subscriptions}

        def excused(channel: ChannelState) -> bool:
            subscription = subscriptions.get(channel)
            return subscription is not None and subscription._bridge.full

        deadline = time.monotonic() + timeout
        await asyncio.to_thread(self.memory._settle, timeout, excused)
        while not all(_callbacks_idle(s) for s in self._subscriptions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the on_change callbacks did not return in {timeout:g} s")
            await asyncio.sleep(0.005)


def _callbacks_idle(subscription: AsyncSubscription) -> bool:
    return subscription._on_change is None or subscription._idle
