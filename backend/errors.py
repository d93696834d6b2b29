"""The backend's errors, one tree; the HTTP layer maps them to a status and a JSON body.

::

    TidingsBackendError
    ├── ConfigurationError      settings or routes that cannot be used (fails at start-up)
    ├── RecordError             a stream record the publisher cannot read
    ├── StoreError              DynamoDB (sequence counters, change log) failed or kept conflicting
    ├── PublishError            iot-data Publish failed
    └── RequestError            a channels API request that is answered with an error
        ├── BadRequest          400 bad_request      malformed channel or parameter
        ├── Forbidden           403 forbidden        no Cognito identity, or it may not read
        ├── Unavailable         503 unavailable      a DynamoDB read failed; try again
        ├── NotFound            404 not_found        no such API path
        ├── MethodNotAllowed    405 method_not_allowed
        ├── CursorExpired       410 cursor_expired   older than the retention or another epoch
        └── TooManyWaits        429 too_many_waits   no long-poll slot free (``Retry-After``)
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BadRequest",
    "ConfigurationError",
    "CursorExpired",
    "Forbidden",
    "MethodNotAllowed",
    "NotFound",
    "PublishError",
    "RecordError",
    "RequestError",
    "StoreError",
    "TidingsBackendError",
    "TooManyWaits",
    "Unavailable",
]


class TidingsBackendError(Exception):
    """Base of every error the backend raises on purpose."""


class ConfigurationError(TidingsBackendError):
    """The environment or the route file cannot be used."""


class RecordError(TidingsBackendError):
    """A stream record that is malformed or comes from a table no route names."""


class StoreError(TidingsBackendError):
    """A DynamoDB call for the sequence counters or the change log failed."""


class PublishError(TidingsBackendError):
    """An iot-data Publish failed."""


class RequestError(TidingsBackendError):
    """An API request answered with an error; ``STATUS`` and ``CODE`` go to the response."""

    STATUS = 400
    CODE = "bad_request"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body: ``{"error", "message"}`` plus any extra fields."""
        return {"error": self.CODE, "message": self.message, **self.extra}

    def headers(self) -> dict[str, str]:
        """HTTP headers the response carries besides the content type (none by default)."""
        return {}


class BadRequest(RequestError):
    """A malformed channel or query parameter (400)."""


class Forbidden(RequestError):
    """The caller may not read the channel (403)."""

    STATUS = 403
    CODE = "forbidden"


class NotFound(RequestError):
    """No such API path (404)."""

    STATUS = 404
    CODE = "not_found"


class MethodNotAllowed(RequestError):
    """The path exists but not with this method (405)."""

    STATUS = 405
    CODE = "method_not_allowed"


class Unavailable(RequestError):
    """A dependency failed; the request may be retried (503)."""

    STATUS = 503
    CODE = "unavailable"


class CursorExpired(RequestError):
    """The cursor is older than the retention or from another epoch (410, with head and epoch)."""

    STATUS = 410
    CODE = "cursor_expired"

    def __init__(self, message: str, *, head: int, epoch: int) -> None:
        super().__init__(message, head=head, epoch=epoch)
        self.head = head
        self.epoch = epoch


class TooManyWaits(RequestError):
    """The identity already holds every long-poll slot it may (429, with ``Retry-After``).

    ``retry_after_s`` (whole seconds, at least 1) is when a slot is expected to be free.
    """

    STATUS = 429
    CODE = "too_many_waits"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s))

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds."""
        return {"Retry-After": str(self.retry_after_s)}
