"""What the application receives: a :class:`Change` per change, :class:`ContinuityLost` when
changes cannot be delivered.

A ``Change`` is the envelope the publisher builds (``backend/changes.py``), as JSON decodes
it: numbers in ``keys``/``new``/``old`` are ``int`` or ``float``. A change pushed as a
reference (``ref: true``, over the inline size limit) is read back from the API before it is
delivered, so the application always gets the images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

__all__ = ["Change", "ContinuityLost"]


class Change(TypedDict):
    """One change of one channel, delivered once and in ``seq`` order."""

    v: int
    """Envelope version (1)."""
    channel: str
    """The channel, e.g. ``users/<identityId>/todos``."""
    seq: int
    """Position in the channel: contiguous from 1 within an epoch."""
    epoch: int
    """Changes only when the channel's log is reset."""
    id: str
    """The DynamoDB stream record's eventID."""
    op: Literal["insert", "modify", "remove"]
    keys: dict[str, Any]
    """The item's key attributes."""
    new: dict[str, Any] | None
    """The item after the change (the route's attributes); None for ``remove``."""
    old: NotRequired[dict[str, Any] | None]
    """The item before the change, when the route asks for it."""
    at: int
    """When the change happened (ms since the epoch, from the stream record)."""
    expired: NotRequired[bool]
    """True for a deletion by DynamoDB's TTL."""


@dataclass(frozen=True)
class ContinuityLost:
    """What ``on_continuity_lost`` receives besides the channel: where the channel now is.

    ``reason`` is ``cursor_expired`` (the cursor is older than the retention),
    ``epoch_changed`` (the channel's log was reset), ``gap_in_log`` (the log itself misses
    changes) or ``access_denied`` (the identity may no longer read the channel).
    """

    head: int
    epoch: int
    reason: str
