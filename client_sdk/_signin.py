"""How a client signs in: one typed value per ``POST /v1/login`` method.

``Password(username, password)``, ``IdToken(token)`` and ``Device(thing_name, secret)`` are
frozen values that hide their secrets from ``repr``, logs and tracebacks. The client keeps
the value and signs in again with it when its OpenID token runs out, so an ``IdToken`` may be
given a function that returns a fresh token each time.

The 0.x form, a method name and the login fields as keyword arguments
(``connect(url, "password", username=..., password=...)``), is translated here by
:func:`sign_in_from_fields`; it is deprecated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LEGACY_FIELDS",
    "Device",
    "IdToken",
    "Password",
    "SignIn",
    "login_body",
    "sign_in_from_fields",
]

_HIDDEN = "'***'"


def _require_text(owner: str, **values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str):
            raise TypeError(f"{owner}: {name} must be a str, not {type(value).__name__}")
        if not value:
            raise ValueError(f"{owner}: {name} is empty")


@dataclass(frozen=True, repr=False)
class Password:
    """Sign in with a Tidings user's name and password (``tidings users add``)."""

    username: str
    password: str

    def __post_init__(self) -> None:
        _require_text("Password", username=self.username, password=self.password)

    def __repr__(self) -> str:
        return f"Password(username={self.username!r}, password={_HIDDEN})"


@dataclass(frozen=True, repr=False)
class IdToken:
    """Sign in with a Cognito user pool or OpenID Connect ID token (a JWT).

    ``token`` is the JWT, or a function returning a current one: the client signs in again
    when its own OpenID token runs out (every hour by default), and an ID token given as a
    string may have expired by then.
    """

    token: str | Callable[[], str]

    def __post_init__(self) -> None:
        if not callable(self.token):
            _require_text("IdToken", token=self.token)

    def current(self) -> str:
        """The token to sign in with now (calls the function when one was given)."""
        token = self.token() if callable(self.token) else self.token
        _require_text("IdToken", token=token)
        return token

    def __repr__(self) -> str:
        return f"IdToken(token={_HIDDEN})"


@dataclass(frozen=True, repr=False)
class Device:
    """Sign in as a registered device (an IoT thing) with its secret."""

    thing_name: str
    secret: str

    def __post_init__(self) -> None:
        _require_text("Device", thing_name=self.thing_name, secret=self.secret)

    def __repr__(self) -> str:
        return f"Device(thing_name={self.thing_name!r}, secret={_HIDDEN})"


SignIn = Password | IdToken | Device
"""Any of the sign-in values :meth:`client_sdk.Tidings.connect` accepts."""

LEGACY_FIELDS: Mapping[str, tuple[str, ...]] = {
    "password": ("username", "password"),
    "id_token": ("id_token",),
    "device": ("thing_name", "secret"),
}
"""The 0.x ``method`` names and the keyword arguments each took."""


def login_body(sign_in: SignIn) -> dict[str, str]:
    """The JSON body of ``POST /v1/login`` for ``sign_in``."""
    if isinstance(sign_in, Password):
        return {"method": "password", "username": sign_in.username, "password": sign_in.password}
    if isinstance(sign_in, IdToken):
        return {"method": "id_token", "id_token": sign_in.current()}
    if isinstance(sign_in, Device):
        return {"method": "device", "thing_name": sign_in.thing_name, "secret": sign_in.secret}
    raise TypeError(
        f"sign in with Password(...), IdToken(...) or Device(...), not {type(sign_in).__name__}"
    )


def sign_in_from_fields(method: str, fields: Mapping[str, Any]) -> SignIn:
    """The 0.x form: ``method`` and its login fields as keyword arguments.

    Raises :class:`ValueError` for an unknown method and :class:`TypeError` for a missing or
    unexpected field (nothing unknown is ever sent to the server).
    """
    expected = LEGACY_FIELDS.get(method)
    if expected is None:
        known = ", ".join(repr(name) for name in LEGACY_FIELDS)
        raise ValueError(f"unknown sign-in method {method!r}; the methods are {known}")
    unexpected = sorted(set(fields) - set(expected))
    if unexpected:
        raise TypeError(f"connect() got an unexpected keyword argument {unexpected[0]!r}")
    missing = [name for name in expected if name not in fields]
    if missing:
        raise TypeError(f"sign-in method {method!r} needs {', '.join(missing)}")
    if method == "password":
        return Password(fields["username"], fields["password"])
    if method == "id_token":
        return IdToken(fields["id_token"])
    return Device(fields["thing_name"], fields["secret"])
