"""Per-channel ordering, dedupe and gap detection: pure logic, no I/O.

Each channel's changes carry ``seq`` (contiguous from 1 within an ``epoch``). Pushed changes
can arrive twice (QoS 1 redelivery, overlap with a catch-up), out of order, or with holes (a
connection drop). :class:`ChannelOrder` turns whatever arrives into what the application may
see — each change once, in ``seq`` order — and tells its owner when to fetch the missing
range from the API and when continuity was lost (cursor expired, epoch changed).

A hole opened by a push is usually a reordering, not a loss: the publisher keeps several
publishes of a channel in flight and AWS IoT does not order them. So a push-side gap first
asks its owner to wait (:class:`AwaitGap`); if the missing changes have not arrived when the
owner calls :meth:`ChannelOrder.gap_timeout`, that asks for the fill.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AwaitGap", "ChannelOrder", "Deliver", "Fill", "Lost"]

Envelope = Mapping[str, Any]


@dataclass(frozen=True)
class Deliver:
    """Hand this change to the application."""

    change: Envelope


@dataclass(frozen=True)
class Fill:
    """Fetch the changes after ``after`` from the API (a gap, a reference, or a resume)."""

    after: int


@dataclass(frozen=True)
class AwaitGap:
    """A push left a hole after ``after``: call ``gap_timeout`` after the reorder window."""

    after: int


@dataclass(frozen=True)
class Lost:
    """Continuity was lost: changes between the cursor and ``head`` cannot be delivered."""

    head: int
    epoch: int
    reason: str


Action = Deliver | Fill | AwaitGap | Lost


@dataclass
class ChannelOrder:
    """Ordering state of one channel.

    ``cursor`` is the last ``seq`` delivered (0 before the first); ``epoch`` is None until the
    first change or head tells it. Methods return the actions to carry out, in order.
    """

    channel: str
    cursor: int = 0
    epoch: int | None = None
    max_buffer: int = 10_000
    _buffer: dict[int, Envelope] = field(default_factory=dict)
    _filling: bool = False
    _fill_epoch: int | None = None  # the epoch when the outstanding fill was asked for
    _awaiting_gap: bool = False

    @property
    def filling(self) -> bool:
        """True while a fill is outstanding."""
        return self._filling

    def on_push(self, change: Envelope) -> list[Action]:
        """A change arrived over the push transport."""
        seq = int(change["seq"])
        epoch = int(change.get("epoch", 0))
        actions: list[Action] = []
        if self.epoch is None:
            self.epoch = epoch
        elif epoch != self.epoch:
            if epoch < self.epoch:
                return []  # a stale message from before the reset
            actions.append(Lost(seq, epoch, "epoch_changed"))
            self.epoch = epoch
            self.cursor = 0
            self._buffer.clear()
        if seq <= self.cursor or seq in self._buffer:
            return actions
        if change.get("ref"):
            self._buffer[seq] = change
            return [*actions, *self._request_fill()]
        if seq == self.cursor + 1 and not self._buffer:
            self.cursor = seq
            return [*actions, Deliver(change)]
        if len(self._buffer) >= self.max_buffer:
            self._buffer.clear()
        self._buffer[seq] = change
        actions.extend(self._drain())
        if self._buffer and not self._filling and not self._awaiting_gap:
            self._awaiting_gap = True
            actions.append(AwaitGap(self.cursor))
        return actions

    def gap_timeout(self) -> list[Action]:
        """The reorder window after an :class:`AwaitGap` is over: fill what is still missing."""
        self._awaiting_gap = False
        if self._buffer:
            return self._request_fill()
        return []

    def resume(self) -> list[Action]:
        """After a (re)connect or a poll tick: fetch whatever came after the cursor."""
        return self._request_fill()

    def on_fill(
        self, changes: Sequence[Envelope], head: int, epoch: int, more: bool
    ) -> list[Action]:
        """The API answered a fill with ``changes`` (ordered), the channel's head and epoch."""
        self._filling = False
        if self._stale_answer(epoch):
            return self._request_fill() if self._buffer else []
        actions: list[Action] = []
        if self.epoch is not None and epoch != self.epoch:
            actions.append(Lost(head, epoch, "epoch_changed"))
            self.cursor = 0
            self._buffer.clear()
        self.epoch = epoch
        for change in changes:
            if int(change.get("epoch", epoch)) != epoch:
                continue
            seq = int(change["seq"])
            if seq <= self.cursor:
                continue
            if seq != self.cursor + 1:
                # the log itself has a hole: it can only be retention or a reset
                actions.append(Lost(seq - 1, epoch, "gap_in_log"))
            self.cursor = seq
            self._buffer.pop(seq, None)
            actions.append(Deliver(change))
        actions.extend(self._drain())
        if more or self._needs_fill(head):
            actions.extend(self._request_fill())
        return actions

    def on_cursor_expired(self, head: int, epoch: int) -> list[Action]:
        """The API says the cursor is older than the retention (or from another epoch)."""
        self._filling = False
        if self._stale_answer(epoch):
            return self._request_fill() if self._buffer else []
        actions: list[Action] = [Lost(head, epoch, "cursor_expired")]
        if self.epoch is not None and epoch != self.epoch:
            self._buffer.clear()  # what waits there belongs to the old epoch
        self.cursor = head
        self.epoch = epoch
        for seq in [s for s in self._buffer if s <= self.cursor]:
            del self._buffer[seq]
        actions.extend(self._drain())
        if self._buffer:
            actions.extend(self._request_fill())
        return actions

    def on_fill_failed(self) -> None:
        """A fill did not complete; the next push or resume asks again."""
        self._filling = False

    # ------------------------------------------------------------------ internals
    def _stale_answer(self, epoch: int) -> bool:
        """Whether a fill's answer comes from before the channel's epoch changed: its changes
        (or its 410) speak of a cursor that no longer exists, so it is dropped."""
        if self.epoch is None:
            return False
        asked_in_another_epoch = self._fill_epoch is not None and self._fill_epoch != self.epoch
        return epoch < self.epoch or asked_in_another_epoch

    def _needs_fill(self, head: int) -> bool:
        return head > self.cursor or bool(self._buffer)

    def _request_fill(self) -> list[Action]:
        if self._filling:
            return []
        self._filling = True
        self._fill_epoch = self.epoch
        return [Fill(self.cursor)]

    def _drain(self) -> list[Action]:
        actions: list[Action] = []
        while True:
            nxt = self._buffer.get(self.cursor + 1)
            if nxt is None or nxt.get("ref"):
                return actions
            del self._buffer[self.cursor + 1]
            self.cursor += 1
            actions.append(Deliver(nxt))
