"""The client's control loop: one thread owns the connection and every channel's ordering.

Pushed messages, fill results, connection events and subscriptions are queued to the control
thread (``tidings-control``), so ordering logic never races. Timers (the reorder window, a
retry after ``Retry-After``, the v1 transport's reconnect, the periodic tick that decides
fallback and renewal) are entries in the loop's own timer heap, not threads: ``close()`` has
nothing left to cancel. API calls (fills, long-polls, resubscriptions) run on a small worker
pool and report back through the same queue. The application's callbacks never run here:
each channel hands its changes to a delivery thread of its own (:mod:`client_sdk._delivery`),
and state changes go to one more, so a slow callback delays neither recovery nor the other
channels.

A fill the API refuses with ``Retry-After`` (503 at capacity, 429 ``too_many_waits``) is
retried after that many seconds, not at once. ``too_many_waits`` means the identity already
holds every long-poll slot it may (one per channel, a few in all): the channel then reads
without waiting (no slot needed) so nothing it has is held back, and long-polls again only
after ``Retry-After``; until then, in poll mode, it reads again only at that time. Any other
failed fill is retried after a jittered backoff.

Poll mode is the fallback while push is down, or the whole connection with
``transport="poll"``: then no push transport is ever opened, the link starts as ``poll``,
and every channel is read after its cursor, again and again. ``poll_interval_s`` spaces the
starts of two reads of one channel (a ``poll`` timer); a full page (``more``) is read on at
once. The clock (monotonic by default) times every timer and hold, so a test can inject one.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from client_sdk._delivery import ChannelDelivery, Delivery, Item
from client_sdk._envelope import Change, ContinuityLost
from client_sdk._errors import (
    AccessDenied,
    ClientClosed,
    ConnectTimeout,
    CursorExpired,
    RateLimited,
    ServiceUnavailable,
    SignInFailed,
    TidingsError,
)
from client_sdk._options import ClientOptions
from client_sdk._ordering import AwaitGap, ChannelOrder, Deliver, Fill, Lost
from client_sdk._service import Service
from client_sdk._state import ConnectionState, Link, connection_state
from client_sdk._transport import PushTransport, V1Transport

__all__ = ["ChannelState", "ClientCore", "OnChange", "OnLost", "Sink"]

log = logging.getLogger("tidings.client")

OnChange = Callable[[Change], None]
OnLost = Callable[[str, ContinuityLost], None]
Sink = Callable[[Item], None]

TICK_S = 0.5
JOIN_TIMEOUT_S = 30.0
IDLE_TIMERS = frozenset({"tick", "poll"})
"""Timers that leave the client idle (``quiet()``): the tick, and the next poll's wait."""


@dataclass(eq=False)
class ChannelState:
    """One subscribed channel, as the control loop keeps it."""

    name: str
    topic: str
    order: ChannelOrder
    delivery: ChannelDelivery
    ready: bool = False
    early: list[Change] = field(default_factory=list)
    closed: bool = False
    delivered: int = 0
    fill_failures: int = 0
    long_poll_at: float = 0.0  # no long-poll before then (clock time): the API said so
    held: bool = False  # the callback is behind: pushes are left to the change log
    catching_up: bool = False  # reading what it missed (after a reconnect, after=, a hold)
    long_polling: bool = False  # a long-poll is out: it answers as soon as there is news
    read_at: float = 0.0  # clock time the last read from the API started
    read_requested: bool = False  # read after the cursor once the read under way answers


class ClientCore:
    """The connection, the channels and the control loop behind :class:`~client_sdk.Tidings`."""

    def __init__(
        self,
        service: Service,
        options: ClientOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.service = service
        self.options = options
        self._clock = clock
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._timers: list[tuple[float, int, str, Any]] = []
        self._timer_order = itertools.count()
        self._workers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="tidings-io")
        self._channels: dict[str, ChannelState] = {}
        self._lock = threading.Lock()
        self._closing = threading.Lock()
        self._closed = False
        self._link: Link = "connecting"
        self._polls_only = options.transport == "poll"  # no push transport, ever
        self._poll_ok = False
        self._probing = False
        self._failures = 0
        self._down_since: float | None = clock()
        self._transport: PushTransport | None = None
        self._retiring: list[PushTransport] = []
        self._connected_at = 0.0
        self._verified_at = clock()
        self._changed = threading.Condition()
        self._count_lock = threading.Lock()
        self._unhandled = 0  # events queued and not yet handled
        self._in_flight = 0  # worker tasks under way
        self._pending_timers = 0  # timers other than the tick
        self._up_once = False
        self._fatal: TidingsError | None = None
        self._last_failure = ""
        self._state = ConnectionState.CONNECTING
        on_state = options.on_state
        self._state_delivery: Delivery[ConnectionState] | None = None
        if on_state is not None:
            self._state_delivery = Delivery("state", on_state)
            self._state_delivery.put(self._state)
        self._stats = {
            "pushed": 0,
            "filled": 0,
            "duplicates": 0,
            "reconnects": 0,
            "polls": 0,
            "renewals": 0,
            "holds": 0,
        }
        self._loop = threading.Thread(
            target=self._control_loop, daemon=True, name="tidings-control"
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the push transport (none with ``transport="poll"``: poll from the start)
        and start the control loop."""
        if self._polls_only:
            self._post("start_polling", None)
        else:
            self._open_transport()
        self._loop.start()

    @property
    def state(self) -> ConnectionState:
        """The current connection state."""
        return self._state

    def wait_connected(self, timeout: float) -> None:
        """Return once push is up or polling works; raise when that cannot happen in time.

        Raises :class:`SignInFailed` (signing in again was refused), :class:`AccessDenied`
        (AWS IoT refused the connection) or :class:`ConnectTimeout`.
        """
        with self._changed:
            self._changed.wait_for(
                lambda: self._up_once or self._fatal is not None or self._closed, timeout
            )
            if self._up_once:
                return
            fatal = self._fatal
        if fatal is not None:
            raise fatal
        if self._closed:
            raise ClientClosed("the client was closed while connecting")
        reason = f" (last attempt: {self._last_failure})" if self._last_failure else ""
        if self._polls_only:
            raise ConnectTimeout(
                f"the channels API did not answer within {self.options.connect_timeout_s:g}"
                f" s{reason}; connect_timeout_s in ClientOptions sets how long to wait"
            )
        raise ConnectTimeout(
            f"no push connection and no working poll within {self.options.connect_timeout_s:g}"
            f" s{reason}; connect_timeout_s in ClientOptions sets how long to wait"
        )

    def close(self) -> None:
        """Stop the control loop, the transports, the workers; join every thread. Idempotent."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
        with self._changed:
            self._changed.notify_all()
        if self._loop.is_alive():
            self._events.put(("stop", None))  # not counted
            if self._loop is not threading.current_thread():
                self._loop.join(JOIN_TIMEOUT_S)
        # the loop is over: the transports it opened are final
        for transport in [self._transport, *self._retiring]:
            if transport is not None:
                try:
                    transport.stop()
                except Exception:
                    log.exception("stopping a push transport failed")
        self.service.close()
        self._workers.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
        for channel in channels:
            channel.closed = True
            channel.delivery.stop()
        self._set_state(ConnectionState.SIGNED_OUT)
        if self._state_delivery is not None:
            self._state_delivery.stop(drain=True)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def mode(self) -> Literal["connecting", "push", "poll"]:
        """``push``, ``poll``, or ``connecting`` (neither yet, or not any more)."""
        link = self._link
        if link == "push":
            return "push"
        if link == "poll":
            return "poll"
        return "connecting"

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters."""
        return {**self._stats, **self.service.counters()}

    # ------------------------------------------------------------------ subscriptions
    def expand(self, channel: str) -> str:
        """``users/me/...`` → ``users/<identityId>/...``; for an X.509 device,
        ``things/me/...`` → ``things/<thing name>/...``."""
        parts = channel.strip("/").split("/")
        if len(parts) >= 2 and parts[1] == "me":
            if parts[0] == "users":
                parts[1] = self.service.identity_id
            elif parts[0] == "things" and self.service.thing_name:
                parts[1] = self.service.thing_name
        return "/".join(parts)

    def subscribe(self, channel: str, sink: Sink, after: int | None) -> ChannelState:
        """Start receiving ``channel`` into ``sink`` (called on the channel's delivery
        thread); raises :class:`AccessDenied` for a channel the identity may not read."""
        if self._closed:
            raise ClientClosed("the client is closed")
        name = self.expand(channel)
        with self._lock:
            if name in self._channels:
                raise TidingsError(f"already subscribed to {name}; close that subscription first")
        head = self.service.head(name)  # raises AccessDenied for a channel it may not read
        start, epoch = (int(head["head"]) if after is None else after), int(head["epoch"])
        with self._lock:
            if name in self._channels:
                raise TidingsError(f"already subscribed to {name}; close that subscription first")
            if self._closed:
                raise ClientClosed("the client is closed")
            state = ChannelState(
                name,
                self.service.topic_prefix + name,
                ChannelOrder(name),
                ChannelDelivery(name, sink, start, epoch),
                catching_up=start < int(head["head"]),
            )
            self._channels[name] = state
        transport = self._transport
        if self._link == "push" and transport is not None:
            try:
                transport.subscribe(state.topic)
            except AccessDenied:
                self.unsubscribe(state)
                raise
            except ServiceUnavailable as exc:
                # the connection went while subscribing: the reconnect subscribes again
                log.info("subscribing %s over push failed (%s); resubscribing later", name, exc)
        self._post("ready", (state, start, epoch))
        return state

    def unsubscribe(self, channel: ChannelState) -> None:
        """Stop receiving ``channel`` (idempotent)."""
        if channel.closed:
            return
        channel.closed = True
        with self._lock:
            if self._channels.get(channel.name) is channel:
                del self._channels[channel.name]
        transport = self._transport
        if transport is not None and self._link == "push" and not self._closed:
            self._submit(lambda: transport.unsubscribe(channel.topic))
        channel.delivery.stop()

    def read_now(self, channel: str) -> None:
        """Make ``channel`` read after its cursor from the API now, or as soon as the read
        under way answers (for the test double: what was published is read)."""
        with self._lock:
            state = self._channels.get(self.expand(channel))
        if state is not None:
            self._post("read_now", state)

    def quiet(self, parked: int = 0, excused: Callable[[ChannelState], bool] | None = None) -> bool:
        """True when nothing is left to do: no event, no timer but the tick and the waits
        for the next poll (``poll_interval_s``), no worker task but ``parked`` long-polls,
        every callback returned (a channel ``excused`` aside)."""
        with self._count_lock:
            if self._unhandled or self._in_flight - parked > 0 or self._pending_timers:
                return False
        for channel in self._live_channels():
            if not channel.delivery.idle and not (excused is not None and excused(channel)):
                return False
        return self._state_delivery is None or self._state_delivery.idle

    def _live_channels(self) -> list[ChannelState]:
        with self._lock:
            return [c for c in self._channels.values() if not c.closed]

    # ------------------------------------------------------------------ transport
    def _open_transport(self) -> PushTransport:
        transport = self.service.new_transport(self)
        previous = self._transport
        self._transport = transport
        if previous is not None:
            self._retiring.append(previous)
        transport.start()
        return transport

    # TransportEvents, called from transport threads
    def on_message(self, topic: str, payload: bytes) -> None:
        """A pushed message (transport thread)."""
        self._post("push", (topic, payload))

    def on_connected(self, transport: PushTransport) -> None:
        """The transport (re)connected (transport thread)."""
        self._post("connected", transport)

    def on_disconnected(self, transport: PushTransport, reason: str) -> None:
        """The transport lost its connection (transport thread)."""
        self._post("disconnected", (transport, reason))

    def on_connect_failed(
        self, transport: PushTransport, reason: str, refused: bool = False
    ) -> None:
        """A connection attempt failed (transport thread); ``refused``: not authorised."""
        self._post("connect_failed", (transport, reason, refused))

    # ------------------------------------------------------------------ the loop
    def _post(self, kind: str, data: Any) -> None:
        """Queue the event ``(kind, data)`` to the loop (any thread)."""
        with self._count_lock:
            self._unhandled += 1
        self._events.put((kind, data))

    def _schedule(self, delay_s: float, kind: str, data: Any) -> None:
        """Queue the event ``(kind, data)`` to the loop in ``delay_s`` seconds (loop only)."""
        due = self._clock() + max(0.0, delay_s)
        heapq.heappush(self._timers, (due, next(self._timer_order), kind, data))
        if kind not in IDLE_TIMERS:
            self._pending_timers += 1

    def _control_loop(self) -> None:
        self._schedule(TICK_S, "tick", None)
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - self._clock())
            try:
                kind, data = self._events.get(timeout=timeout)
            except queue.Empty:
                kind, data = "", None
            if kind == "stop":
                return
            if kind:
                self._handle_safely(kind, data)
            now = self._clock()
            while self._timers and self._timers[0][0] <= now:
                _due, _n, due_kind, due_data = heapq.heappop(self._timers)
                self._handle_safely(due_kind, due_data)
                if due_kind not in IDLE_TIMERS:
                    self._pending_timers -= 1
            self._after_event()
            if kind:
                with self._count_lock:
                    self._unhandled -= 1

    def _handle_safely(self, kind: str, data: Any) -> None:
        if self._closed:
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
            self._schedule(TICK_S, "tick", None)
            self._on_tick()
        elif kind == "resubscribed":
            self._on_resubscribed(*data)
        elif kind == "probe":
            self._on_probe(data)
        elif kind == "probe_again":
            if self._link == "poll" and not self._poll_ok:
                self._probe()
        elif kind == "restart":
            transport = self._transport
            if transport is not None and data is transport and self._link != "signed_out":
                transport.start()
        elif kind == "drained" and not data.closed:
            data.held = False
            data.catching_up = True
            if data.ready:
                self._run(data, data.order.resume())
        elif kind == "gap" and not data.closed:
            self._run(data, data.order.gap_timeout())
        elif kind in ("retry", "poll") and not data.closed and data.ready:
            if self._link != "signed_out":
                self._run(data, data.order.resume())
        elif kind == "read_now" and not data.closed:
            data.read_requested = True
            if data.ready:
                self._run(data, data.order.resume())
        elif kind == "start_polling":
            self._start_polling()

    def _after_event(self) -> None:
        """Say the new state, if it changed; wake ``wait_connected`` once up."""
        catching_up = self._link == "push" and any(c.catching_up for c in self._live_channels())
        state = connection_state(self._link, self._poll_ok, catching_up, self._closed)
        if state == ConnectionState.OFFLINE and self._polls_only and not self._up_once:
            state = ConnectionState.CONNECTING  # poll mode: the API has not answered yet
        self._set_state(state)
        up = state in (ConnectionState.LIVE, ConnectionState.CATCHING_UP, ConnectionState.POLLING)
        if up and not self._up_once:
            with self._changed:
                self._up_once = True
                self._changed.notify_all()

    def _set_state(self, state: ConnectionState) -> None:
        if state == self._state:
            return
        log.info("connection state: %s", state.value)
        self._state = state
        if self._state_delivery is not None:
            self._state_delivery.put(state)

    def _set_fatal(self, error: TidingsError) -> None:
        with self._changed:
            if self._fatal is None:
                self._fatal = error
            self._changed.notify_all()

    # ------------------------------------------------------------------ channels
    def _hand_over(self, channel: ChannelState, item: Item) -> None:
        """Queue ``item`` to the channel's delivery thread; hold the channel when its
        callback has fallen ``max_buffered_changes`` behind."""
        backlog = channel.delivery.put(item)
        limit = self.options.max_buffered_changes
        if backlog >= limit and not channel.held:
            channel.held = True
            self._stats["holds"] += 1
            log.info("%s: the callback is %d changes behind; holding", channel.name, backlog)
            channel.delivery.call_when_below(limit // 2, lambda: self._post("drained", channel))

    def _run(self, channel: ChannelState, actions: list[Any]) -> None:
        for action in actions:
            if channel.closed:
                return
            if isinstance(action, Deliver):
                channel.delivered += 1
                self._hand_over(channel, action.change)  # type: ignore[arg-type]
            elif isinstance(action, Fill):
                if channel.held:  # read on once the callback has caught up ("drained")
                    channel.order.on_fill_failed()
                else:
                    self._start_fill(channel, action.after)
            elif isinstance(action, AwaitGap):
                self._await_gap(channel)
            elif isinstance(action, Lost):
                lost = ContinuityLost(action.head, action.epoch, action.reason)
                log.warning("continuity lost on %s: %s", channel.name, lost)
                channel.catching_up = False
                self._hand_over(channel, lost)

    def _on_push(self, topic: str, payload: bytes) -> None:
        prefix = self.service.topic_prefix
        if not topic.startswith(prefix):
            return
        with self._lock:
            channel = self._channels.get(topic[len(prefix) :])
        if channel is None or channel.closed:
            return
        try:
            change = json.loads(payload)
            int(change["seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed message on %s", topic)
            return
        self._stats["pushed"] += 1
        if channel.held:
            return  # the change log keeps it: read after the callback catches up
        if not channel.ready:
            channel.early.append(change)
            return
        before = channel.delivered
        self._run(channel, channel.order.on_push(change))
        if channel.delivered == before:
            self._stats["duplicates"] += 1

    def _on_ready(self, channel: ChannelState, start: int, epoch: int) -> None:
        if channel.closed:
            return
        channel.order.cursor = start
        channel.order.epoch = epoch
        channel.ready = True
        early, channel.early = channel.early, []
        for change in early:
            self._run(channel, channel.order.on_push(change))
        self._run(channel, channel.order.resume())

    def _await_gap(self, channel: ChannelState) -> None:
        """Give reordered pushes ``reorder_window_s`` to close a gap before filling it."""
        if self.options.reorder_window_s <= 0:
            self._run(channel, channel.order.gap_timeout())
            return
        self._schedule(self.options.reorder_window_s, "gap", channel)

    def _start_fill(self, channel: ChannelState, after: int) -> None:
        polling = self._link == "poll"
        may_wait = polling and self._clock() >= channel.long_poll_at
        wait = self.options.poll_wait_s if may_wait else 0.0
        epoch = channel.order.epoch
        service, limit = self.service, self.options.fill_limit

        def fetch() -> None:
            try:
                result: Any = service.changes(channel.name, after, limit, wait, epoch)
            except Exception as exc:
                result = exc
            self._post("fill", (channel, result))

        if polling:
            self._stats["polls"] += 1
        channel.read_at = self._clock()
        channel.read_requested = False
        channel.long_polling = wait > 0
        if not self._submit(fetch):
            channel.long_polling = False
            channel.order.on_fill_failed()

    def _submit(self, function: Callable[[], None]) -> bool:
        def counted() -> None:
            try:
                function()
            finally:
                with self._count_lock:
                    self._in_flight -= 1

        with self._count_lock:
            self._in_flight += 1
        try:
            self._workers.submit(counted)
        except RuntimeError:  # shut down
            with self._count_lock:
                self._in_flight -= 1
            return False
        return True

    def _backoff_s(self, failures: int) -> float:
        doubled = self.options.min_backoff_ms * (1 << min(failures, 10))
        ceiling = min(self.options.max_backoff_ms, doubled)
        return ceiling / 1000 * random.uniform(0.5, 1.0)

    def _on_fill_result(self, channel: ChannelState, result: Any) -> None:
        channel.long_polling = False
        if channel.closed:
            return
        order = channel.order
        if isinstance(result, CursorExpired):
            channel.fill_failures = 0
            self._run(channel, order.on_cursor_expired(result.head, result.epoch))
        elif isinstance(result, Exception):
            order.on_fill_failed()
            log.info("fill for %s failed (%s); retrying", channel.name, result)
            if isinstance(result, SignInFailed) and not isinstance(result, RateLimited):
                self._sign_out(result)
                return
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
            if self._link == "poll":
                self._poll_ok = False
            channel.fill_failures += 1
            self._retry_later(channel, self._backoff_s(channel.fill_failures))
            return
        else:
            channel.fill_failures = 0
            if self._link == "poll":
                self._poll_ok = True
            changes = result.get("changes") or []
            self._stats["filled"] += len(changes)
            self._run(
                channel,
                order.on_fill(
                    changes, int(result["head"]), int(result["epoch"]), bool(result.get("more"))
                ),
            )
        if not order.filling:
            channel.catching_up = False
        if channel.read_requested and not order.filling:
            self._run(channel, order.resume())  # read_now() came while this read was out
        elif self._link == "poll" and not order.filling:
            self._poll_again(channel)

    def _poll_again(self, channel: ChannelState) -> None:
        """Poll mode, the channel current: read again now, or when the API's hold
        (``too_many_waits``) or ``poll_interval_s`` after the last read's start is over."""
        now = self._clock()
        hold_s = channel.long_poll_at - now
        interval_s = channel.read_at + self.options.poll_interval_s - now
        if hold_s > 0 and hold_s >= interval_s:
            self._retry_later(channel, hold_s)  # not a stream of reads without waiting
        elif interval_s > 0:
            self._schedule(interval_s, "poll", channel)
        else:
            self._run(channel, channel.order.resume())

    def _retry_later(self, channel: ChannelState, delay_s: float) -> None:
        """Resume ``channel`` (fetch after its cursor) in ``delay_s`` seconds."""
        self._schedule(delay_s, "retry", channel)

    # ------------------------------------------------------------------ connection
    def _on_connected(self, transport: PushTransport) -> None:
        if transport is not self._transport or self._link == "signed_out":
            # a renewal's new connection while an old one is retiring: it takes over
            return
        self._failures = 0
        self._down_since = None
        if self._up_once and self._link != "push":
            self._stats["reconnects"] += 1
        self._link = "push"
        self._connected_at = self._clock()
        channels = self._live_channels()

        def resubscribe() -> None:
            for channel in channels:
                try:
                    transport.subscribe(channel.topic)
                except TidingsError as exc:
                    log.warning("resubscribing %s failed: %s", channel.name, exc)
            self._post("resubscribed", (transport, channels))

        self._submit(resubscribe)

    def _on_resubscribed(self, transport: PushTransport, channels: list[ChannelState]) -> None:
        retiring, self._retiring = self._retiring, []
        for old in retiring:
            self._submit(old.stop)
        for channel in channels:
            if channel.ready and not channel.closed:
                # a long-poll still out answers as soon as anything is there: not behind
                channel.catching_up = not channel.long_polling
                self._run(channel, channel.order.resume())

    def _on_disconnected(self, transport: PushTransport, reason: str) -> None:
        if transport is not self._transport:
            return
        log.info("push connection lost (%s)", reason)
        self._last_failure = reason
        if self._link == "push":
            self._link = "down"
            self._down_since = self._clock()

    def _on_connect_failed(self, transport: PushTransport, reason: str, refused: bool) -> None:
        if transport is not self._transport or self._link == "signed_out":
            return
        self._failures += 1
        self._last_failure = reason
        if self._down_since is None:
            self._down_since = self._clock()
        log.info("push connection attempt failed (%s)", reason)
        signed_out = self.service.refused()
        if signed_out is not None:
            self._sign_out(signed_out)
            return
        if refused and not self._up_once:
            self._set_fatal(
                AccessDenied(
                    f"AWS IoT refused the connection ({reason}): the identity's policies do "
                    "not allow iot:Connect with this client id"
                )
            )
        if isinstance(transport, V1Transport):
            # AWSIoTPythonSDK retries only once connected: retry a failed first connect here
            self._schedule(self._backoff_s(self._failures), "restart", transport)

    def _sign_out(self, error: SignInFailed) -> None:
        """Signing in again was refused: stop connecting and polling; say so."""
        if self._link == "signed_out":
            return
        log.warning("signed out: %s", error)
        self._link = "signed_out"
        transport = self._transport
        if transport is not None:
            self._submit(transport.stop)
        self._set_fatal(error)

    def _on_tick(self) -> None:
        now = self._clock()
        link = self._link
        if (
            link in ("connecting", "down")
            and self._down_since is not None
            and (
                now - self._down_since >= self.options.fallback_after_s
                or self._failures >= self.options.fallback_after_failures
            )
        ):
            log.warning("no push connection; falling back to polling")
            self._link = "poll"
            self._poll_ok = False
            resumed = False
            for channel in self._live_channels():
                if channel.ready:
                    resumed = True
                    self._run(channel, channel.order.resume())
            if not resumed:
                self._probe()
        if link == "push" and self.service.push_may_miss:
            self._verify_channels(now)
        if (
            link == "push"
            and self.service.connection_expires
            and not self._retiring
            and now - self._connected_at >= self.options.max_connection_age_s
        ):
            log.info("renewing the push connection before AWS IoT's 24 h limit")
            self._connected_at = now
            self._stats["renewals"] += 1
            self._open_transport()

    def _start_polling(self) -> None:
        """``transport="poll"``: no push connection, ever; the API is the connection."""
        if self._link != "connecting":
            return
        log.info("polling the channels API (transport='poll')")
        self._link = "poll"
        self._down_since = None
        self._poll_ok = False
        self._probe()

    def _verify_channels(self, now: float) -> None:
        """Read each idle channel after its cursor once every ``verify_interval_s``: what a
        transport that cannot see its connection missed arrives this way."""
        if now - self._verified_at < self.options.verify_interval_s:
            return
        self._verified_at = now
        for channel in self._live_channels():
            if channel.ready and not channel.held and not channel.order.filling:
                self._run(channel, channel.order.resume())

    def _probe(self) -> None:
        """In poll mode with nothing to poll: check that the API answers."""
        if self._probing:
            return
        channels = self.service.readable_channels
        if not channels:
            self._poll_ok = True
            return
        self._probing = True
        service = self.service

        def probe() -> None:
            try:
                service.head(channels[0])
                result: Exception | None = None
            except Exception as exc:
                result = exc
            self._post("probe", result)

        if not self._submit(probe):
            self._probing = False

    def _on_probe(self, error: Exception | None) -> None:
        self._probing = False
        if self._link != "poll":
            return
        if error is None:
            self._poll_ok = True
            return
        self._last_failure = str(error)
        if isinstance(error, SignInFailed) and not isinstance(error, RateLimited):
            self._sign_out(error)
            return
        self._failures += 1
        self._schedule(self._backoff_s(self._failures), "probe_again", None)
