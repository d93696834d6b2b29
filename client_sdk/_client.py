"""The Tidings client: sign in, subscribe, and never miss a change.

All per-channel state lives on one dispatcher thread: pushed messages, fill results and
connection events are queued to it, so ordering logic never races and the application's
callbacks run one at a time, in ``seq`` order per channel. API calls (fills, long-polls,
subscriptions) run on a small worker pool and report back through the same queue.

A fill the API refuses with ``Retry-After`` (503 at capacity, 429 ``too_many_waits``) is
retried after that many seconds, not at once. ``too_many_waits`` means the identity already
holds every long-poll slot it may (one per channel, a few in all): the channel then reads
without waiting (no slot needed) so nothing it has is held back, and long-polls again only
after ``Retry-After``; until then, in poll mode, it reads again only at that time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from client_sdk._api import ChannelsApi
from client_sdk._errors import AccessDenied, CursorExpired, ServiceUnavailable, TidingsError
from client_sdk._http import ssl_context
from client_sdk._ordering import AwaitGap, ChannelOrder, Deliver, Fill, Lost
from client_sdk._session import CredentialSource
from client_sdk._transport import (
    Mqtt5Transport,
    PushTransport,
    TransportSettings,
    V1Transport,
    new_client_id,
)

__all__ = ["Change", "ClientOptions", "ContinuityLost", "Subscription", "Tidings"]

log = logging.getLogger("tidings.client")

Change = Mapping[str, Any]
OnChange = Callable[[Change], None]


@dataclass(frozen=True)
class ContinuityLost:
    """What ``on_continuity_lost`` receives besides the channel: where the channel now is."""

    head: int
    epoch: int
    reason: str  # "cursor_expired" | "epoch_changed" | "gap_in_log"


OnLost = Callable[[str, ContinuityLost], None]


@dataclass(frozen=True)
class ClientOptions:
    """How the client behaves; every field has a production default.

    ``ca_file`` and ``cognito_endpoint`` default to ``TIDINGS_CA_FILE`` and
    ``AWS_ENDPOINT_URL_COGNITO_IDENTITY`` (the local stack writes both); an explicit argument
    wins over the environment.
    """

    ca_file: str | None = None
    cognito_endpoint: str | None = None
    transport: Literal["mqtt5", "v1"] = "mqtt5"
    refresh_margin_s: float = 300.0
    max_connection_age_s: float = 23.5 * 3600
    fallback_after_s: float = 10.0
    fallback_after_failures: int = 3
    poll_wait_s: float = 20.0
    fill_limit: int = 1000
    min_backoff_ms: int = 500
    max_backoff_ms: int = 20_000
    keep_alive_s: int = 60
    connect_timeout_s: float = 15.0
    reorder_window_s: float = 0.2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientOptions:
        """Defaults from the environment, then ``overrides``."""
        env = os.environ if environ is None else environ
        base = cls(
            ca_file=env.get("TIDINGS_CA_FILE") or None,
            cognito_endpoint=env.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY") or None,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(eq=False)
class _Channel:
    name: str
    topic: str
    on_change: OnChange
    on_lost: OnLost | None
    order: ChannelOrder
    ready: bool = False
    early: list[Change] = field(default_factory=list)
    closed: bool = False
    delivered: int = 0
    long_poll_at: float = 0.0  # no long-poll before then (clock time): the API said so


class Subscription:
    """A live subscription; ``cursor`` is the last ``seq`` delivered to the callback."""

    def __init__(self, client: Tidings, channel: _Channel) -> None:
        self._client = client
        self._channel = channel

    @property
    def channel(self) -> str:
        """The channel name."""
        return self._channel.name

    @property
    def cursor(self) -> int:
        """The last ``seq`` delivered (0 before the first)."""
        return self._channel.order.cursor

    @property
    def epoch(self) -> int | None:
        """The channel's epoch, once known."""
        return self._channel.order.epoch

    def close(self) -> None:
        """Stop receiving this channel."""
        self._client._unsubscribe(self._channel)


class Tidings:
    """A signed-in client. Use :meth:`connect`, then :meth:`subscribe`."""

    def __init__(
        self,
        api_url: str,
        login_body: Mapping[str, Any],
        options: ClientOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options or ClientOptions.from_env()
        self._context = ssl_context(self.options.ca_file)
        self.credentials = CredentialSource(
            api_url,
            login_body,
            context=self._context,
            cognito_endpoint=self.options.cognito_endpoint,
            refresh_margin_s=self.options.refresh_margin_s,
            clock=clock,
        )
        session = self.credentials.session
        self.identity_id = session.identity_id
        self.topic_prefix = session.topic_prefix
        self.readable_channels = session.channels
        self.api = ChannelsApi(self.credentials, self._context, session.region, session.api_url)
        self._clock = clock
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tidings-io")
        self._channels: dict[str, _Channel] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.mode: Literal["connecting", "push", "poll"] = "connecting"
        self._connected = threading.Event()
        self._failures = 0
        self._down_since: float | None = clock()
        self._transport: PushTransport | None = None
        self._retiring: list[PushTransport] = []
        self._connected_at = 0.0
        self.stats = {
            "pushed": 0,
            "filled": 0,
            "duplicates": 0,
            "reconnects": 0,
            "polls": 0,
            "renewals": 0,
        }
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, daemon=True, name="tidings-dispatch"
        )
        self._dispatcher.start()
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True, name="tidings-tick")
        self._ticker.start()
        self._open_transport()

    # ------------------------------------------------------------------ public API
    @classmethod
    def connect(
        cls,
        api_url: str,
        method: str = "password",
        *,
        options: ClientOptions | None = None,
        **login: Any,
    ) -> Tidings:
        """Sign in with ``method`` (``password``, ``id_token`` or ``device``) and connect.

        The keyword arguments are the login fields (``username``/``password``, ``id_token``,
        or ``thing_name``/``secret``); option fields may be passed too (``ca_file=...``).
        Returns once the push connection is up, or once the client fell back to polling.
        """
        option_names = set(ClientOptions.__dataclass_fields__)
        overrides = {k: login.pop(k) for k in list(login) if k in option_names}
        chosen = options or ClientOptions.from_env(**overrides)
        client = cls(api_url, {"method": method, **login}, chosen)
        client._connected.wait(chosen.connect_timeout_s)
        return client

    def subscribe(
        self,
        channel: str,
        on_change: OnChange,
        after: int | None = None,
        on_continuity_lost: OnLost | None = None,
    ) -> Subscription:
        """Receive ``channel``'s changes, each once and in order.

        ``after=None`` starts at the channel's current head; ``after=N`` delivers everything
        after ``seq`` N first. ``users/me/...`` stands for the signed-in identity's own
        channel. Raises :class:`AccessDenied` if the identity may not read the channel.
        """
        if self._closed:
            raise TidingsError("the client is closed")
        name = self._expand(channel)
        if name in self._channels:
            raise TidingsError(f"already subscribed to {name}; close that subscription first")
        state = _Channel(
            name, self.topic_prefix + name, on_change, on_continuity_lost, ChannelOrder(name)
        )
        head = self.api.head(name)  # raises AccessDenied for a channel the identity may not read
        with self._lock:
            self._channels[name] = state
        transport = self._transport
        if self.mode == "push" and transport is not None:
            try:
                transport.subscribe(state.topic)
            except AccessDenied:
                with self._lock:
                    self._channels.pop(name, None)
                raise
        start = int(head["head"]) if after is None else after
        self._events.put(("ready", (state, start, int(head["epoch"]))))
        return Subscription(self, state)

    def changes(self, channel: str, after: int | None = None) -> AsyncIterator[Change]:
        """The async form: ``async for change in t.changes("public/scores", after=41)``."""
        return self._aiter(channel, after)

    async def _aiter(self, channel: str, after: int | None) -> AsyncIterator[Change]:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Change] = asyncio.Queue()

        def deliver(change: Change) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, change)

        subscription = await loop.run_in_executor(
            None, lambda: self.subscribe(channel, deliver, after)
        )
        try:
            while True:
                yield await inbox.get()
        finally:
            subscription.close()

    def close(self) -> None:
        """Disconnect and stop every background thread."""
        if self._closed:
            return
        self._closed = True
        self._events.put(("stop", None))
        for transport in [self._transport, *self._retiring]:
            if transport is not None:
                transport.stop()
        self._dispatcher.join(timeout=5)
        self._workers.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Tidings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def _expand(self, channel: str) -> str:
        parts = channel.strip("/").split("/")
        if len(parts) >= 2 and parts[0] == "users" and parts[1] == "me":
            parts[1] = self.identity_id
        return "/".join(parts)

    def _open_transport(self) -> PushTransport:
        session = self.credentials.session
        kind = V1Transport if self.options.transport == "v1" else Mqtt5Transport
        transport = kind(
            self,
            self.credentials,
            TransportSettings(
                endpoint=session.iot_endpoint,
                port=session.iot_port,
                region=session.region,
                ca_file=self.options.ca_file,
                client_id=new_client_id(self.identity_id),
                min_backoff_ms=self.options.min_backoff_ms,
                max_backoff_ms=self.options.max_backoff_ms,
                keep_alive_s=self.options.keep_alive_s,
            ),
        )
        previous = self._transport
        self._transport = transport
        if previous is not None:
            self._retiring.append(previous)
        transport.start()
        return transport

    # TransportEvents, called from transport threads
    def on_message(self, topic: str, payload: bytes) -> None:
        """A pushed message (transport thread)."""
        self._events.put(("push", (topic, payload)))

    def on_connected(self, transport: PushTransport) -> None:
        """The transport (re)connected (transport thread)."""
        self._events.put(("connected", transport))

    def on_disconnected(self, transport: PushTransport, reason: str) -> None:
        """The transport lost its connection (transport thread)."""
        self._events.put(("disconnected", (transport, reason)))

    def on_connect_failed(self, transport: PushTransport, reason: str) -> None:
        """A connection attempt failed (transport thread)."""
        self._events.put(("connect_failed", (transport, reason)))

    # ------------------------------------------------------------------ dispatcher
    def _tick_loop(self) -> None:
        while not self._closed:
            time.sleep(0.5)
            self._events.put(("tick", None))

    def _dispatch_loop(self) -> None:
        while True:
            kind, data = self._events.get()
            if kind == "stop":
                return
            try:
                self._handle(kind, data)
            except Exception:
                log.exception("tidings client: handling %s failed", kind)

    def _handle(self, kind: str, data: Any) -> None:
        if kind == "push":
            self._on_push(*data)
        elif kind == "fill":
            self._on_fill_result(*data)
        elif kind == "ready":
            self._on_ready(*data)
        elif kind == "connected":
            self._on_connected(data)
        elif kind == "disconnected":
            self._on_disconnected(*data)
        elif kind == "connect_failed":
            self._on_connect_failed(*data)
        elif kind == "tick":
            self._on_tick()
        elif kind == "resubscribed":
            self._on_resubscribed(*data)
        elif kind == "gap" and not data.closed:
            self._run(data, data.order.gap_timeout())
        elif kind == "retry" and not data.closed and data.ready:
            self._run(data, data.order.resume())

    def _run(self, channel: _Channel, actions: list[Any]) -> None:
        for action in actions:
            if channel.closed:
                return
            if isinstance(action, Deliver):
                channel.delivered += 1
                try:
                    channel.on_change(action.change)
                except Exception:
                    log.exception("on_change for %s raised", channel.name)
            elif isinstance(action, Fill):
                self._start_fill(channel, action.after)
            elif isinstance(action, AwaitGap):
                self._await_gap(channel)
            elif isinstance(action, Lost):
                lost = ContinuityLost(action.head, action.epoch, action.reason)
                log.warning("continuity lost on %s: %s", channel.name, lost)
                if channel.on_lost is not None:
                    try:
                        channel.on_lost(channel.name, lost)
                    except Exception:
                        log.exception("on_continuity_lost for %s raised", channel.name)

    def _on_push(self, topic: str, payload: bytes) -> None:
        if not topic.startswith(self.topic_prefix):
            return
        channel = self._channels.get(topic[len(self.topic_prefix) :])
        if channel is None or channel.closed:
            return
        try:
            change = json.loads(payload)
            int(change["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", topic)
            return
        self.stats["pushed"] += 1
        if not channel.ready:
            channel.early.append(change)
            return
        before = channel.delivered
        self._run(channel, channel.order.on_push(change))
        if channel.delivered == before:
            self.stats["duplicates"] += 1

    def _on_ready(self, channel: _Channel, start: int, epoch: int) -> None:
        channel.order.cursor = start
        channel.order.epoch = epoch
        channel.ready = True
        early, channel.early = channel.early, []
        for change in early:
            self._run(channel, channel.order.on_push(change))
        self._run(channel, channel.order.resume())

    def _await_gap(self, channel: _Channel) -> None:
        """Give reordered pushes ``reorder_window_s`` to close a gap before filling it."""
        if self.options.reorder_window_s <= 0:
            self._run(channel, channel.order.gap_timeout())
            return
        timer = threading.Timer(
            self.options.reorder_window_s, lambda: self._events.put(("gap", channel))
        )
        timer.daemon = True
        timer.start()

    def _start_fill(self, channel: _Channel, after: int) -> None:
        may_wait = self.mode == "poll" and self._clock() >= channel.long_poll_at
        wait = self.options.poll_wait_s if may_wait else 0.0
        epoch = channel.order.epoch

        def fetch() -> None:
            try:
                result: Any = self.api.changes(
                    channel.name, after, self.options.fill_limit, wait, epoch
                )
            except Exception as exc:
                result = exc
            self._events.put(("fill", (channel, result)))

        if self.mode == "poll":
            self.stats["polls"] += 1
        self._submit(fetch)

    def _submit(self, function: Callable[[], None]) -> Future[None] | None:
        try:
            return self._workers.submit(function)
        except RuntimeError:  # shut down
            return None

    def _on_fill_result(self, channel: _Channel, result: Any) -> None:
        if channel.closed:
            return
        order = channel.order
        if isinstance(result, CursorExpired):
            self._run(channel, order.on_cursor_expired(result.head, result.epoch))
        elif isinstance(result, Exception):
            order.on_fill_failed()
            log.info("fill for %s failed (%s); retrying", channel.name, result)
            if isinstance(result, AccessDenied):
                self._run(channel, [Lost(order.cursor, order.epoch or 0, "access_denied")])
                return
            if isinstance(result, ServiceUnavailable) and result.retry_after is not None:
                if result.code == "too_many_waits":
                    # read now without waiting (no slot needed); long-poll after Retry-After
                    channel.long_poll_at = self._clock() + result.retry_after
                    self._run(channel, order.resume())
                else:
                    self._retry_later(channel, result.retry_after)
                return
        else:
            changes = result.get("changes") or []
            self.stats["filled"] += len(changes)
            self._run(
                channel,
                order.on_fill(
                    changes, int(result["head"]), int(result["epoch"]), bool(result.get("more"))
                ),
            )
        if self.mode == "poll" and not order.filling:
            hold_s = channel.long_poll_at - self._clock()
            if hold_s > 0:
                self._retry_later(channel, hold_s)  # not a stream of reads without waiting
            else:
                self._run(channel, order.resume())

    def _retry_later(self, channel: _Channel, delay_s: float) -> None:
        """Resume ``channel`` (fetch after its cursor) in ``delay_s`` seconds."""
        timer = threading.Timer(delay_s, lambda: self._events.put(("retry", channel)))
        timer.daemon = True
        timer.start()

    def _on_connected(self, transport: PushTransport) -> None:
        if transport is not self._transport:
            # a renewal's new connection while an old one is retiring: it takes over
            return
        self._failures = 0
        self._down_since = None
        self.mode = "push"
        self._connected_at = self._clock()
        if self._connected.is_set():
            self.stats["reconnects"] += 1
        self._connected.set()
        channels = [c for c in self._channels.values() if not c.closed]

        def resubscribe() -> None:
            for channel in channels:
                try:
                    transport.subscribe(channel.topic)
                except TidingsError as exc:
                    log.warning("resubscribing %s failed: %s", channel.name, exc)
            self._events.put(("resubscribed", (transport, channels)))

        self._submit(resubscribe)

    def _on_resubscribed(self, transport: PushTransport, channels: list[_Channel]) -> None:
        for old in self._retiring:
            old.stop()
        self._retiring.clear()
        for channel in channels:
            if channel.ready and not channel.closed:
                self._run(channel, channel.order.resume())

    def _on_disconnected(self, transport: PushTransport, reason: str) -> None:
        if transport is not self._transport:
            return
        log.info("push connection lost (%s)", reason)
        if self.mode == "push":
            self.mode = "connecting"
            self._down_since = self._clock()

    def _on_connect_failed(self, transport: PushTransport, reason: str) -> None:
        if transport is not self._transport:
            return
        self._failures += 1
        if self._down_since is None:
            self._down_since = self._clock()
        log.info("push connection attempt failed (%s)", reason)
        if isinstance(transport, V1Transport) and not self._closed:
            delay = (
                min(
                    self.options.max_backoff_ms,
                    self.options.min_backoff_ms * 2 ** min(self._failures, 10),
                )
                / 1000
                * random.random()
            )
            threading.Timer(delay, transport.start).start()

    def _on_tick(self) -> None:
        now = self._clock()
        if (
            self.mode != "push"
            and self._down_since is not None
            and self.mode != "poll"
            and (
                now - self._down_since >= self.options.fallback_after_s
                or self._failures >= self.options.fallback_after_failures
            )
        ):
            log.warning("no push connection; falling back to polling")
            self.mode = "poll"
            self._connected.set()
            for channel in self._channels.values():
                if channel.ready and not channel.closed:
                    self._run(channel, channel.order.resume())
        if (
            self.mode == "push"
            and not self._retiring
            and now - self._connected_at >= self.options.max_connection_age_s
        ):
            log.info("renewing the push connection before AWS IoT's 24 h limit")
            self._connected_at = now
            self.stats["renewals"] += 1
            self._open_transport()

    def _unsubscribe(self, channel: _Channel) -> None:
        channel.closed = True
        with self._lock:
            self._channels.pop(channel.name, None)
        transport = self._transport
        if transport is not None and self.mode == "push":
            self._submit(lambda: transport.unsubscribe(channel.topic))
