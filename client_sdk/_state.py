"""The connection state the application sees, derived from what the control loop knows."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

__all__ = ["ConnectionState", "Link", "connection_state"]

Link = Literal["connecting", "push", "down", "poll", "signed_out"]
"""The control loop's own view: never connected yet, push up, push lost, polling, signed out."""


class ConnectionState(StrEnum):
    """Where the client is; ``on_state`` is called with each new one.

    A ``StrEnum``: ``state == "live"`` works. The browser client uses the same names.
    """

    CONNECTING = "connecting"
    """Signed in, opening the first connection."""
    LIVE = "live"
    """Push connection up, every channel current: changes arrive as they happen."""
    CATCHING_UP = "catching_up"
    """Push connection up, reading what was missed from the API (after a reconnect, a
    subscription with ``after=``, or a slow consumer)."""
    POLLING = "polling"
    """No push connection; polling the API works (``fallback_after_s``). The client keeps
    trying push and returns to it; with ``transport="poll"`` it polls all along."""
    OFFLINE = "offline"
    """Neither push nor polling works at the moment; reconnecting with backoff."""
    SIGNED_OUT = "signed_out"
    """Closed, or signing in again was refused (password changed, user removed): nothing
    more arrives; sign in again with a new client."""


def connection_state(link: Link, poll_ok: bool, catching_up: bool, closed: bool) -> ConnectionState:
    """The state for the control loop's ``link``, whether polls answer, and whether any
    channel is catching up."""
    if closed or link == "signed_out":
        return ConnectionState.SIGNED_OUT
    if link == "push":
        return ConnectionState.CATCHING_UP if catching_up else ConnectionState.LIVE
    if link == "poll":
        return ConnectionState.POLLING if poll_ok else ConnectionState.OFFLINE
    if link == "connecting":
        return ConnectionState.CONNECTING
    return ConnectionState.OFFLINE
