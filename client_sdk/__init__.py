"""Tidings client: DynamoDB changes pushed over AWS IoT, each once and in order.

from client_sdk import Password, Tidings

with Tidings.connect(api_url, Password("ann", "...")) as t:
    sub = t.subscribe("users/me/todos", print)
"""

from client_sdk._async import AsyncSubscription, AsyncTidings
from client_sdk._client import Subscription, Tidings
from client_sdk._envelope import Change, ContinuityLost
from client_sdk._errors import (
    AccessDenied,
    BadRequest,
    ClientClosed,
    ConnectTimeout,
    ContinuityBroken,
    CursorExpired,
    RateLimited,
    ServiceUnavailable,
    SignInFailed,
    TidingsError,
)
from client_sdk._options import ClientOptions
from client_sdk._signin import X509, Device, GreengrassCore, IdToken, Password, SignIn
from client_sdk._state import ConnectionState

__all__ = [
    "X509",
    "AccessDenied",
    "AsyncSubscription",
    "AsyncTidings",
    "BadRequest",
    "Change",
    "ClientClosed",
    "ClientOptions",
    "ConnectTimeout",
    "ConnectionState",
    "ContinuityBroken",
    "ContinuityLost",
    "CursorExpired",
    "Device",
    "GreengrassCore",
    "IdToken",
    "Password",
    "RateLimited",
    "ServiceUnavailable",
    "SignIn",
    "SignInFailed",
    "Subscription",
    "Tidings",
    "TidingsError",
]


def __getattr__(name: str) -> type[SignInFailed]:
    """``LoginError``, the 0.x name of :class:`SignInFailed`, with a DeprecationWarning."""
    if name == "LoginError":
        import warnings

        warnings.warn(
            "client_sdk.LoginError is deprecated: catch SignInFailed (LoginError is the same "
            "class in 1.x and goes in 2.0)",
            DeprecationWarning,
            stacklevel=2,
        )
        return SignInFailed
    raise AttributeError(f"module 'client_sdk' has no attribute {name!r}")
