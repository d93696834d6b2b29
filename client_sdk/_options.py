"""How the client behaves: one frozen settings object, every field with a production default."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from client_sdk._state import ConnectionState

__all__ = ["ClientOptions"]


@dataclass(frozen=True)
class ClientOptions:
    """How the client behaves; every field has a production default.

    ``ca_file`` and ``cognito_endpoint`` default to ``TIDINGS_CA_FILE`` and
    ``AWS_ENDPOINT_URL_COGNITO_IDENTITY`` (the local stack writes both) when the options come
    from :meth:`from_env`, which ``connect()`` uses when no options are given; an explicit
    argument wins over the environment.
    """

    ca_file: str | None = None
    """The CA bundle to trust (the local stack's); None: the system trust store."""
    cognito_endpoint: str | None = None
    """Cognito Identity's endpoint; None: the region's public endpoint."""
    transport: Literal["mqtt5", "v1", "greengrass", "poll"] = "mqtt5"
    """``mqtt5`` (awsiotsdk), ``v1`` (AWSIoTPythonSDK: legacy devices, Greengrass v1),
    ``greengrass`` (a Greengrass v2 component: the nucleus's IPC; the sign-in is then
    :class:`~client_sdk.GreengrassCore`, which picks this transport by itself) or ``poll``
    (no push connection at all: every channel is read from the channels API after its
    cursor, as ``poll_wait_s`` and ``poll_interval_s`` say; not with ``GreengrassCore``)."""
    connect_timeout_s: float = 15.0
    """How long ``connect()`` waits for a push connection or a working poll (with
    ``transport="poll"``: for the API to answer)."""
    refresh_margin_s: float = 300.0
    """Credentials and OpenID tokens are renewed this long before they expire."""
    max_connection_age_s: float = 23.5 * 3600
    """The push connection is renewed at this age (AWS IoT closes WebSockets at 24 h)."""
    fallback_after_s: float = 10.0
    """Poll the API after this long without a push connection..."""
    fallback_after_failures: int = 3
    """...or after this many failed connection attempts in a row."""
    poll_wait_s: float = 20.0
    """How long one long-poll may wait for a change (the API allows up to 20 s); 0: short
    polls (the API answers at once)."""
    poll_interval_s: float = 0.0
    """While polling (``transport="poll"``, or the fallback while push is down): the least
    time between the starts of two reads of one channel. 0: read again as soon as the
    previous read answered (back-to-back long-polls); 60 with ``poll_wait_s=0``: one short
    poll a minute. A read that returns a full page (``more``) is followed at once."""
    fill_limit: int = 1000
    """Changes per API read (1 to 1000)."""
    min_backoff_ms: int = 500
    """Reconnect backoff: the first delay (jittered, doubling)..."""
    max_backoff_ms: int = 20_000
    """...and the longest."""
    keep_alive_s: int = 60
    """MQTT keep-alive (AWS IoT clamps it to 30 to 1200 s)."""
    reorder_window_s: float = 0.2
    """How long a hole left by a push may wait for reordered pushes before it is filled."""
    verify_interval_s: float = 30.0
    """With a push transport that cannot see its own connection (a Greengrass component's:
    the nucleus's link to AWS IoT is invisible to it), each channel is also read from the API
    after its cursor this often, so changes published while the core was offline arrive."""
    max_buffered_changes: int = 1000
    """Changes a channel may hold for a slow callback before the client stops taking its
    pushes; it reads them from the API once the callback has caught up (nothing is lost)."""
    on_state: Callable[[ConnectionState], None] | None = None
    """Called with each new :class:`ConnectionState`, on a thread of its own (the async
    client: on the event loop). See ``docs/CLIENT.md``."""

    def __post_init__(self) -> None:
        if self.poll_interval_s < 0 or self.poll_wait_s < 0:
            raise ValueError("poll_interval_s and poll_wait_s must not be negative")
        if self.transport == "poll" and self.poll_wait_s == 0 and self.poll_interval_s == 0:
            raise ValueError(
                "transport='poll' with poll_wait_s=0 and poll_interval_s=0 would read every "
                "channel in a busy loop: set poll_wait_s (long-polls) or poll_interval_s"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ClientOptions:
        """Defaults from the environment, then ``overrides`` (None values are ignored)."""
        env = os.environ if environ is None else environ
        base = cls(
            ca_file=env.get("TIDINGS_CA_FILE") or None,
            cognito_endpoint=env.get("AWS_ENDPOINT_URL_COGNITO_IDENTITY") or None,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})
