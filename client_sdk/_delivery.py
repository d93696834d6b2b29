"""Handing changes to the application: one thread per channel, in order, never on the
control loop.

The control loop decides what a channel delivers (each change once, in ``seq`` order, and
continuity losses where they happen) and appends it to that channel's
:class:`ChannelDelivery`; the delivery's own thread calls the application. A callback that
blocks holds up its own channel only: the control loop keeps reconnecting, filling and
falling back, and the other channels keep delivering.

A channel whose callback falls behind by ``max_buffered_changes`` is *held* by the control
loop: it stops taking that channel's pushes (they stay in the change log) and, once the
backlog is down to half, reads on from the cursor through the API. Memory stays bounded and
nothing is dropped or reordered.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

from client_sdk._envelope import Change, ContinuityLost

__all__ = ["ChannelDelivery", "Delivery", "Item", "cursor_after"]

log = logging.getLogger("tidings.client")

Item = Change | ContinuityLost
T = TypeVar("T")


def cursor_after(item: Item, cursor: int, epoch: int | None) -> tuple[int, int | None]:
    """A channel's cursor and epoch once the application has had ``item``: the change's
    ``seq``, or where a continuity loss left the channel (0 in a new epoch)."""
    if isinstance(item, ContinuityLost):
        return (0 if item.reason == "epoch_changed" else item.head), item.epoch
    return int(item["seq"]), int(item["epoch"])


class Delivery(Generic[T]):
    """Items handed to ``sink`` one at a time, in order, on a thread of its own."""

    def __init__(self, name: str, sink: Callable[[T], None]) -> None:
        self.name = name
        self._sink = sink
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._stop_when_empty = False
        self._busy = False
        self._below: tuple[int, Callable[[], None]] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"tidings-{name}")
        self._thread.start()

    def put(self, item: T) -> int:
        """Queue ``item``; returns the backlog (items not yet handed over)."""
        with self._cond:
            if self._stopped or self._stop_when_empty:
                return 0
            self._items.append(item)
            self._cond.notify()
            return len(self._items)

    @property
    def backlog(self) -> int:
        """Items queued, not yet handed over."""
        return len(self._items)

    @property
    def idle(self) -> bool:
        """Nothing queued and no callback running."""
        with self._cond:
            return not self._items and not self._busy

    def call_when_below(self, low: int, callback: Callable[[], None]) -> None:
        """Call ``callback`` (once, from the delivery thread or at once) when the backlog
        is at most ``low``."""
        with self._cond:
            if len(self._items) > low:
                self._below = (low, callback)
                return
        callback()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._stopped and not self._stop_when_empty:
                    self._cond.wait()
                if self._stopped or not self._items:
                    return
                item = self._items.popleft()
                self._busy = True
                notify = None
                if self._below is not None and len(self._items) <= self._below[0]:
                    notify, self._below = self._below[1], None
            if notify is not None:
                notify()
            try:
                self._sink(item)
            except Exception:
                log.exception("a tidings callback (%s) raised", self.name)
            finally:
                self._handed_over(item)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _handed_over(self, item: T) -> None:
        """Called on the delivery thread once ``item``'s callback has returned."""

    def stop(self, *, drain: bool = False, timeout: float = 30.0) -> None:
        """Stop; with ``drain`` hand over what is queued first, else drop it. Joins the
        thread (a running callback is waited for) unless called from it."""
        with self._cond:
            if drain:
                self._stop_when_empty = True
            else:
                self._stopped = True
                self._items.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("a callback (%s) still runs after %g s", self.name, timeout)


class ChannelDelivery(Delivery[Item]):
    """One channel's changes and continuity losses; keeps the delivered cursor."""

    def __init__(
        self, channel: str, sink: Callable[[Item], None], cursor: int, epoch: int | None
    ) -> None:
        self.cursor = cursor
        """The last ``seq`` whose callback returned (the start before the first)."""
        self.epoch = epoch
        super().__init__(f"deliver {channel}", sink)

    def _handed_over(self, item: Item) -> None:
        self.cursor, self.epoch = cursor_after(item, self.cursor, self.epoch)
