"""The threaded client: ``Tidings.connect(api_url, Password(...))``, then ``subscribe``.

The control loop and the connection live in :mod:`client_sdk._core`; this module is the
public face: signing in, waiting for the connection, subscriptions, closing.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator, Mapping
from dataclasses import fields
from typing import Any, Literal, Self, overload

from client_sdk._core import ChannelState, ClientCore, OnChange, OnLost
from client_sdk._delivery import Item
from client_sdk._envelope import Change, ContinuityLost
from client_sdk._options import ClientOptions
from client_sdk._service import Service, aws_service
from client_sdk._signin import (
    X509,
    Device,
    GreengrassCore,
    IdToken,
    Password,
    SignIn,
    sign_in_from_fields,
)
from client_sdk._state import ConnectionState

__all__ = ["Subscription", "Tidings"]

_OPTION_NAMES = frozenset(f.name for f in fields(ClientOptions))
_SIGN_IN_TYPES = (Password, IdToken, Device, X509, GreengrassCore)


class Subscription:
    """One channel's subscription: ``close()`` it, or use it as a context manager."""

    def __init__(self, core: ClientCore, state: ChannelState) -> None:
        self._core = core
        self._state = state

    @property
    def channel(self) -> str:
        """The channel name (``users/me/...`` expanded to the identity's id)."""
        return self._state.name

    @property
    def cursor(self) -> int:
        """The last ``seq`` whose callback returned (the start before the first): keep it
        to resume with ``after=``."""
        return self._state.delivery.cursor

    @property
    def epoch(self) -> int | None:
        """The channel's epoch as of the last delivery."""
        return self._state.delivery.epoch

    @property
    def closed(self) -> bool:
        """True once closed (by :meth:`close` or the client's ``close()``)."""
        return self._state.closed

    def close(self) -> None:
        """Stop receiving this channel (idempotent). A callback of the channel that is
        running is waited for, unless ``close()`` is called from that callback."""
        self._core.unsubscribe(self._state)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"cursor={self.cursor}"
        return f"<Subscription {self.channel} {state}>"


def resolve_connect_arguments(
    sign_in: SignIn | str | None,
    options: ClientOptions | None,
    method: str | None,
    legacy: Mapping[str, Any],
) -> tuple[SignIn, ClientOptions, bool]:
    """``connect()``'s arguments as a sign-in value and options; True when deprecated.

    Raises :class:`TypeError` for an unknown keyword argument or a missing sign-in, and
    :class:`ValueError` for an unknown method; never sends anything anywhere.
    """
    if isinstance(sign_in, _SIGN_IN_TYPES):
        extra = (["method"] if method is not None else []) + sorted(legacy)
        if extra:
            raise TypeError(f"connect() got an unexpected keyword argument {extra[0]!r}")
        return sign_in, options if options is not None else ClientOptions.from_env(), False
    if sign_in is not None and not isinstance(sign_in, str):
        raise TypeError(
            "connect() signs in with Password(username, password), IdToken(token), "
            f"Device(thing_name, secret) or X509(...), not {type(sign_in).__name__}"
        )
    if sign_in is not None and method is not None and sign_in != method:
        raise TypeError(f"connect() got two sign-in methods, {sign_in!r} and {method!r}")
    name = sign_in if sign_in is not None else method
    if name is None and not legacy:
        raise TypeError(
            "connect() needs a sign-in: Password(username, password), IdToken(token), "
            "Device(thing_name, secret) or X509(...)"
        )
    overrides = {k: v for k, v in legacy.items() if k in _OPTION_NAMES}
    login_fields = {k: v for k, v in legacy.items() if k not in _OPTION_NAMES}
    if overrides and options is not None:
        raise TypeError(
            f"connect() got options= and the option {sorted(overrides)[0]!r}: put it in "
            "ClientOptions(...)"
        )
    typed = sign_in_from_fields(name or "password", login_fields)
    chosen = options if options is not None else ClientOptions.from_env(**overrides)
    return typed, chosen, True


class Tidings:
    """A signed-in, connected client. Create it with :meth:`connect`.

    Use it as a context manager (or call :meth:`close`): closing stops every thread and
    timer the client started.
    """

    def __init__(self, core: ClientCore) -> None:
        """Internal: :meth:`connect` builds the client."""
        self._core = core

    @overload
    @classmethod
    def connect(
        cls, api_url: str, sign_in: SignIn, *, options: ClientOptions | None = None
    ) -> Tidings: ...

    @overload
    @classmethod
    def connect(
        cls,
        api_url: str,
        sign_in: str | None = None,
        *,
        options: ClientOptions | None = None,
        method: str | None = None,
        **fields: Any,
    ) -> Tidings: ...

    @classmethod
    def connect(
        cls,
        api_url: str,
        sign_in: SignIn | str | None = None,
        *,
        options: ClientOptions | None = None,
        method: str | None = None,
        **fields: Any,
    ) -> Tidings:
        """Sign in and connect: ``Tidings.connect(api_url, Password("ann", "..."))``.

        ``sign_in`` is a :class:`Password`, :class:`IdToken`, :class:`Device`,
        :class:`X509` (a device with a certificate: no ``/v1/login``, MQTT over mutual TLS)
        or :class:`GreengrassCore` (a Greengrass v2 component: the nucleus's IPC);
        ``options`` a :class:`ClientOptions` (default: :meth:`ClientOptions.from_env`).
        Returns once the push connection is up, or once polling the API works instead
        (with ``ClientOptions(transport="poll")``: once the API answers; no push at all).

        Raises :class:`SignInFailed` (:class:`RateLimited`) when sign-in is refused,
        :class:`AccessDenied` when AWS IoT refuses the connection, :class:`ConnectTimeout`
        when nothing works within ``options.connect_timeout_s`` and
        :class:`ServiceUnavailable` when the API cannot be reached; a failed connect leaves
        no thread behind. An unknown keyword argument is a :class:`TypeError`.

        Deprecated: the 0.x form ``connect(api_url, "password", username=..., password=...)``
        (or ``method=``, and option fields as keyword arguments) still works in 1.x with a
        :class:`DeprecationWarning`.
        """
        typed, chosen, deprecated = resolve_connect_arguments(sign_in, options, method, fields)
        if deprecated:
            warnings.warn(
                "Tidings.connect(api_url, method, **fields) is deprecated: pass a sign-in "
                "value and options, as in Tidings.connect(api_url, Password(username, "
                "password), options=ClientOptions(...))",
                DeprecationWarning,
                stacklevel=2,
            )
        deadline = time.monotonic() + chosen.connect_timeout_s
        service = aws_service(api_url, typed, chosen)
        try:
            service.sign_in(chosen.connect_timeout_s)
        except BaseException:
            service.close()
            raise
        return cls._start(service, chosen, deadline)

    @classmethod
    def _start(cls, service: Service, options: ClientOptions, deadline: float) -> Tidings:
        """Start the control loop over ``service`` and wait for the connection."""
        core = ClientCore(service, options)
        try:
            core.start()
            core.wait_connected(max(0.0, deadline - time.monotonic()))
        except BaseException:
            core.close()
            raise
        return cls(core)

    # ------------------------------------------------------------------ properties
    @property
    def identity_id(self) -> str:
        """The signed-in Cognito identity (``users/<identity_id>/...`` is its own channel); an
        :class:`X509` device's thing name."""
        return self._core.service.identity_id

    @property
    def readable_channels(self) -> tuple[str, ...]:
        """The channels sign-in said this identity may read."""
        return self._core.service.readable_channels

    @property
    def options(self) -> ClientOptions:
        """The options the client runs with."""
        return self._core.options

    @property
    def state(self) -> ConnectionState:
        """The connection state: ``connecting``, ``live``, ``catching_up``, ``polling``,
        ``offline`` or ``signed_out`` (``options.on_state`` is told each change)."""
        return self._core.state

    @property
    def mode(self) -> Literal["connecting", "push", "poll"]:
        """Deprecated (0.x): ``push``, ``poll`` or ``connecting``; use :attr:`state`."""
        warnings.warn(
            "Tidings.mode is deprecated: use Tidings.state (ConnectionState)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._core.mode

    @property
    def stats(self) -> dict[str, int]:
        """Counters (a snapshot): ``pushed``, ``filled``, ``duplicates``, ``reconnects``,
        ``polls``, ``renewals``, ``holds``, ``logins``, ``credential_refreshes``,
        ``api_calls``."""
        return self._core.stats

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._core.closed

    # ------------------------------------------------------------------ subscriptions
    def subscribe(
        self,
        channel: str,
        on_change: OnChange,
        after: int | None = None,
        on_continuity_lost: OnLost | None = None,
    ) -> Subscription:
        """Receive ``channel``'s changes, each once and in order.

        ``after=None`` starts at the channel's current head; ``after=N`` delivers everything
        after ``seq`` N first. ``users/me/...`` stands for the signed-in identity's own
        channel, and ``things/me/...`` for an :class:`X509` device's thing. Raises
        :class:`AccessDenied` at once if the identity may not read the channel,
        :class:`ClientClosed` after :meth:`close`.

        The callbacks run on the channel's own delivery thread, one at a time and in order;
        callbacks of different channels may run at the same time. An exception from a
        callback is logged (``tidings.client``) and the next change is delivered.
        """
        name = self._core.expand(channel)

        def sink(item: Item) -> None:
            if isinstance(item, ContinuityLost):
                if on_continuity_lost is not None:
                    on_continuity_lost(name, item)
            else:
                on_change(item)

        state = self._core.subscribe(channel, sink, after)
        return Subscription(self._core, state)

    def changes(self, channel: str, after: int | None = None) -> AsyncIterator[Change]:
        """Deprecated (0.x): ``async for change in t.changes(channel)``; use
        :class:`AsyncTidings`, which also connects without blocking the event loop."""
        warnings.warn(
            "Tidings.changes() is deprecated: use AsyncTidings.connect(...) and its "
            "changes() or subscribe()",
            DeprecationWarning,
            stacklevel=2,
        )
        from client_sdk._async import AsyncTidings

        return AsyncTidings(self).changes(channel, after=after)

    def close(self) -> None:
        """Disconnect, stop every timer and thread the client started, and join them.

        Idempotent.
        """
        self._core.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Tidings {self.identity_id} {self.state.value}>"
