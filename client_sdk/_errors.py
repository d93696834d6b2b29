"""The client's errors.

TidingsError
├── SignInFailed            sign-in refused (``LoginError``, its 0.x name, still works)
│   └── RateLimited         too many attempts; ``retry_after`` seconds
├── AccessDenied            the identity may not connect or read that channel (never retried)
├── BadRequest              the client sent something the service refuses (a bug)
├── CursorExpired           the cursor is older than the retention (``head``, ``epoch``)
├── ContinuityBroken        async iteration without ``on_continuity_lost``: changes were lost
├── ClientClosed            the client (or the subscription) was closed
└── ServiceUnavailable      the service cannot be reached right now (retried)
    └── ConnectTimeout      ``connect()`` got no working connection in ``connect_timeout_s``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client_sdk._envelope import ContinuityLost

__all__ = [
    "AccessDenied",
    "BadRequest",
    "ClientClosed",
    "ConnectTimeout",
    "ContinuityBroken",
    "CursorExpired",
    "LoginError",
    "RateLimited",
    "ServiceUnavailable",
    "SignInFailed",
    "TidingsError",
]


class TidingsError(Exception):
    """Base of every error the client raises."""


class SignInFailed(TidingsError):
    """Signing in was refused (wrong credentials give one generic message)."""


LoginError = SignInFailed
"""The 0.x name of :class:`SignInFailed`; ``except LoginError`` keeps working in 1.x."""


class RateLimited(SignInFailed):
    """Too many failed attempts; wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessDenied(TidingsError):
    """The identity may not read this channel (or may not connect at all)."""


class BadRequest(TidingsError):
    """The service refused a malformed request."""


class CursorExpired(TidingsError):
    """The cursor is older than the change log's retention, or from another epoch."""

    def __init__(self, message: str, head: int, epoch: int) -> None:
        super().__init__(message)
        self.head = head
        self.epoch = epoch


class ContinuityBroken(TidingsError):
    """Changes of ``channel`` were lost (``lost`` says where the channel now is).

    Raised by ``async for change in t.changes(...)`` when no ``on_continuity_lost`` was
    given: the iteration ends rather than hide the gap. Reload the channel's state, then
    iterate again from ``lost.head``.
    """

    def __init__(self, channel: str, lost: ContinuityLost) -> None:
        super().__init__(f"continuity lost on {channel}: {lost.reason} (head {lost.head})")
        self.channel = channel
        self.lost = lost


class ClientClosed(TidingsError):
    """The client or the subscription is closed."""


class ServiceUnavailable(TidingsError):
    """The endpoint did not answer, or answered with a server error or a throttle.

    ``retry_after`` is the seconds the service asked to wait (its ``Retry-After``), if any;
    ``code`` its error code (``too_many_waits``: the identity holds every long-poll slot).
    """

    def __init__(self, message: str, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


class ConnectTimeout(ServiceUnavailable):
    """``connect()`` got neither a push connection nor a working poll in time."""
