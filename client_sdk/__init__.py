"""Tidings client: DynamoDB changes pushed over AWS IoT, each once and in order.

from client_sdk import Tidings

with Tidings.connect(api_url, method="password", username="ann", password="...") as t:
    sub = t.subscribe("users/me/todos", print)
"""

from client_sdk._client import ClientOptions, ContinuityLost, Subscription, Tidings
from client_sdk._errors import (
    AccessDenied,
    BadRequest,
    CursorExpired,
    LoginError,
    RateLimited,
    ServiceUnavailable,
    TidingsError,
)

__all__ = [
    "AccessDenied",
    "BadRequest",
    "ClientOptions",
    "ContinuityLost",
    "CursorExpired",
    "LoginError",
    "RateLimited",
    "ServiceUnavailable",
    "Subscription",
    "Tidings",
    "TidingsError",
]
