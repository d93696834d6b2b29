"""The client's errors.

TidingsError
├── LoginError              sign-in refused or impossible
│   └── RateLimited         too many attempts; ``retry_after`` seconds
├── AccessDenied            the identity may not read that channel (never retried)
├── BadRequest              the client sent something the service refuses (a bug)
├── CursorExpired           the cursor is older than the retention (``head``, ``epoch``)
└── ServiceUnavailable      the service cannot be reached right now (retried)
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadRequest",
    "CursorExpired",
    "LoginError",
    "RateLimited",
    "ServiceUnavailable",
    "TidingsError",
]


class TidingsError(Exception):
    """Base of every error the client raises."""


class LoginError(TidingsError):
    """Signing in failed (wrong credentials give one generic message)."""


class RateLimited(LoginError):
    """Too many failed attempts; wait ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AccessDenied(TidingsError):
    """The identity may not read this channel."""


class BadRequest(TidingsError):
    """The service refused a malformed request."""


class CursorExpired(TidingsError):
    """The cursor is older than the change log's retention, or from another epoch."""

    def __init__(self, message: str, head: int, epoch: int) -> None:
        super().__init__(message)
        self.head = head
        self.epoch = epoch


class ServiceUnavailable(TidingsError):
    """The endpoint did not answer, or answered with a server error or a throttle.

    ``retry_after`` is the seconds the service asked to wait (its ``Retry-After``), if any;
    ``code`` its error code (``too_many_waits``: the identity holds every long-poll slot).
    """

    def __init__(self, message: str, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code
