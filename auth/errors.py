"""The errors of the ``auth`` package, and the HTTP status each one maps to.

::

    AuthError                       500 internal_error
    ├── ConfigurationError          500 configuration_error   (a deployment mistake)
    ├── BadRequest                  400 <code naming the problem>
    ├── InvalidCredentials          401 invalid_credentials   (one message for every cause)
    │   └── TokenInvalid            401    a JWT that fails verification (reason kept in .reason)
    │       └── TokenExpired        401    ... because it has expired
    ├── TooManyAttempts             429 too_many_attempts     (.retry_after_s)
    ├── UpstreamError               502 upstream_error        (Cognito / IoT / DynamoDB failed)
    └── StoreError                  -   the users store (CLI): UserExists, UserNotFound
        ├── UserExists
        └── UserNotFound

The HTTP layer (:mod:`auth.http`) turns any of them into ``{"error", "message"}``; an
:class:`InvalidCredentials` never says which part was wrong.
"""

from __future__ import annotations

__all__ = [
    "GENERIC_CREDENTIALS_MESSAGE",
    "AuthError",
    "BadRequest",
    "ConfigurationError",
    "InvalidCredentials",
    "StoreError",
    "TokenExpired",
    "TokenInvalid",
    "TooManyAttempts",
    "UpstreamError",
    "UserExists",
    "UserNotFound",
]

GENERIC_CREDENTIALS_MESSAGE = "The sign-in details are not valid. Check them and try again."


class AuthError(Exception):
    """Base of every error the ``auth`` package raises."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigurationError(AuthError):
    """The service is configured wrongly (missing or malformed setting)."""

    code = "configuration_error"


class BadRequest(AuthError):
    """A request that is malformed; ``code`` names the problem (``invalid_json``, ...)."""

    status = 400
    code = "bad_request"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidCredentials(AuthError):
    """Unknown user, wrong password, unknown device, bad token: the caller is told nothing more."""

    status = 401
    code = "invalid_credentials"

    def __init__(self, reason: str = "invalid credentials") -> None:
        super().__init__(GENERIC_CREDENTIALS_MESSAGE)
        self.reason = reason
        """Why, for logs only; never sent to the caller."""


class TokenInvalid(InvalidCredentials):
    """A JWT that fails verification (signature, algorithm, issuer, audience, kid, ...)."""


class TokenExpired(TokenInvalid):
    """A JWT whose ``exp`` has passed."""


class TooManyAttempts(AuthError):
    """Too many failed logins for this user or address; try again after ``retry_after_s``."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"Too many failed sign-in attempts. Try again in {retry_after_s} seconds.")
        self.retry_after_s = retry_after_s


class UpstreamError(AuthError):
    """An AWS service the login depends on failed; the request may be retried."""

    status = 502
    code = "upstream_error"


class StoreError(AuthError):
    """A users-store operation that cannot be done (CLI)."""


class UserExists(StoreError):
    """``users add`` for a username that is taken."""

    code = "user_exists"


class UserNotFound(StoreError):
    """``users remove`` for a username that does not exist."""

    code = "user_not_found"
