"""The stack as the client's control loop sees it: who signed in, the channels API, and push
transports.

:class:`AwsService` is the real one for a signed-in user: ``POST /v1/login`` and Cognito
credentials (:class:`~client_sdk._session.CredentialSource`), the SigV4-signed channels API
(:class:`~client_sdk._api.ChannelsApi`) and MQTT over SigV4 WebSockets to AWS IoT.
:class:`DeviceService` is the real one for an X.509 device: no sign-in, credentials from the
AWS IoT credentials provider (:class:`~client_sdk._iot_credentials.DeviceCredentialSource`),
the same channels API, and MQTT over mutual TLS as the thing. :func:`aws_service` picks one.
``client_sdk.testing`` supplies an in-memory one, so an application's tests run the real
client without a stack.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

from client_sdk._api import ChannelsApi
from client_sdk._errors import SignInFailed
from client_sdk._greengrass import GreengrassTransport
from client_sdk._http import ssl_context
from client_sdk._iot_credentials import (
    ContainerCredentialSource,
    DeviceCredentialSource,
    RenewingCredentials,
)
from client_sdk._options import ClientOptions
from client_sdk._session import CredentialProvider, CredentialSource
from client_sdk._signin import X509, GreengrassCore, SignIn, login_body
from client_sdk._transport import (
    Mqtt5Transport,
    PushTransport,
    TransportEvents,
    TransportSettings,
    V1Transport,
    new_client_id,
)

__all__ = ["AwsService", "DeviceService", "GreengrassService", "Service", "aws_service"]


class Service(Protocol):
    """What the control loop needs from the stack."""

    identity_id: str
    topic_prefix: str
    readable_channels: tuple[str, ...]
    thing_name: str | None
    """The thing an X.509 device is (``things/me/...`` expands to it); None for a user."""
    connection_expires: bool
    """True when AWS IoT closes the push connection at 24 h (a SigV4 WebSocket), so the client
    renews it at ``max_connection_age_s``; False over mutual TLS, which has no such limit
    (and where a second connection with the thing's client id would take the first over)."""
    push_may_miss: bool
    """True when the push transport cannot see its connection to AWS IoT (a Greengrass
    component's), so the client reads each channel every ``verify_interval_s`` as well."""

    def head(self, channel: str) -> dict[str, Any]:
        """``{"channel", "head", "epoch"}``; raises ``AccessDenied`` for a channel it may
        not read."""
        ...

    def changes(
        self, channel: str, after: int, limit: int, wait: float, epoch: int | None
    ) -> dict[str, Any]:
        """``{"changes", "head", "epoch", "more"}`` after ``after``; raises
        ``CursorExpired``, ``AccessDenied`` or ``ServiceUnavailable``."""
        ...

    def new_transport(self, events: TransportEvents) -> PushTransport:
        """A push transport (not started) with a client id of its own."""
        ...

    def refused(self) -> SignInFailed | None:
        """Why signing in again was refused, if it was (the client is then signed out)."""
        ...

    def counters(self) -> dict[str, int]:
        """``logins``, ``credential_refreshes`` and ``api_calls`` so far."""
        ...

    def close(self) -> None:
        """End every request under way and refuse new ones."""
        ...


class _ChannelsService:
    """What both real services share: the channels API signed with a credential provider."""

    credentials: CredentialProvider
    api: ChannelsApi | None
    thing_name: str | None = None
    connection_expires = True
    push_may_miss = False

    def _api(self) -> ChannelsApi:
        if self.api is None:
            raise RuntimeError("sign_in() first")
        return self.api

    def head(self, channel: str) -> dict[str, Any]:
        """The channel's head and epoch."""
        return self._api().head(channel)

    def changes(
        self, channel: str, after: int, limit: int, wait: float, epoch: int | None
    ) -> dict[str, Any]:
        """The channel's changes after ``after``."""
        return self._api().changes(channel, after, limit, wait, epoch)

    def refused(self) -> SignInFailed | None:
        """The last refusal, if the last sign-in (or credentials fetch) was refused."""
        return self.credentials.refused

    def counters(self) -> dict[str, int]:
        """Sign-ins, credential fetches and API calls so far."""
        return {
            "logins": self.credentials.logins,
            "credential_refreshes": self.credentials.refreshes,
            "api_calls": self.api.calls if self.api is not None else 0,
        }

    def close(self) -> None:
        """End the requests under way (long-polls, sign-ins) and refuse new ones."""
        self.credentials.close()
        if self.api is not None:
            self.api.close()


class AwsService(_ChannelsService):
    """The real stack for a user: sign-in, Cognito credentials, the channels API, AWS IoT."""

    credentials: CredentialSource

    def __init__(
        self,
        api_url: str,
        sign_in: SignIn,
        options: ClientOptions,
        *,
        clock: Callable[[], float] = time.time,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.options = options
        self.context = context or ssl_context(options.ca_file)
        self.credentials = CredentialSource(
            api_url,
            lambda: login_body(sign_in),
            context=self.context,
            cognito_endpoint=options.cognito_endpoint,
            refresh_margin_s=options.refresh_margin_s,
            clock=clock,
        )
        self.api: ChannelsApi | None = None
        self.identity_id = ""
        self.topic_prefix = ""
        self.readable_channels: tuple[str, ...] = ()

    def sign_in(self, timeout: float) -> None:
        """Sign in and fetch the first credentials, each request within ``timeout`` seconds.

        Raises ``SignInFailed`` (``RateLimited``), ``ServiceUnavailable`` (``ConnectTimeout``).
        """
        credentials = self.credentials
        credentials.timeout = max(0.1, timeout)
        try:
            session = credentials.session
            credentials.get()
        finally:
            credentials.timeout = 30.0
        self.identity_id = session.identity_id
        self.topic_prefix = session.topic_prefix
        self.readable_channels = session.channels
        self.api = ChannelsApi(credentials, self.context, session.region, session.api_url)

    def new_transport(self, events: TransportEvents) -> PushTransport:
        """An MQTT 5 (or v1) transport to the session's AWS IoT endpoint."""
        session = self.credentials.session
        kind = V1Transport if self.options.transport == "v1" else Mqtt5Transport
        return kind(
            events,
            self.credentials,
            TransportSettings(
                endpoint=session.iot_endpoint,
                port=session.iot_port,
                region=session.region,
                ca_file=self.options.ca_file,
                client_id=new_client_id(session.identity_id),
                min_backoff_ms=self.options.min_backoff_ms,
                max_backoff_ms=self.options.max_backoff_ms,
                keep_alive_s=self.options.keep_alive_s,
            ),
        )


class _ThingService(_ChannelsService):
    """A thing's stack (an X.509 device, a Greengrass core): no sign-in, role credentials that
    renew themselves, the thing's name as identity; no 24 h connection renewal."""

    credentials: RenewingCredentials
    connection_expires = False

    def __init__(
        self,
        api_url: str,
        thing_name: str,
        region: str,
        topic_prefix: str,
        credentials: RenewingCredentials,
        options: ClientOptions,
        context: ssl.SSLContext | None,
    ) -> None:
        self.options = options
        self.api_url = api_url
        self.region = region
        self.context = context or ssl_context(options.ca_file)
        self.credentials = credentials
        self.api = None
        self.identity_id = thing_name
        self.thing_name = thing_name
        self.topic_prefix = topic_prefix
        self.readable_channels: tuple[str, ...] = ()

    def sign_in(self, timeout: float) -> None:
        """Fetch the first credentials within ``timeout``.

        Raises ``SignInFailed`` (refused: the certificate, thing or role alias; the
        component's token), ``RateLimited``, ``ServiceUnavailable`` (``ConnectTimeout``).
        """
        credentials = self.credentials
        credentials.timeout = max(0.1, timeout)
        try:
            credentials.get()
        finally:
            credentials.timeout = 30.0
        self.api = ChannelsApi(credentials, self.context, self.region, self.api_url)


class DeviceService(_ThingService):
    """The real stack for an X.509 device: no sign-in; the AWS IoT credentials provider for
    the channels API; MQTT over mutual TLS with the thing name as client id.

    The thing name is the client id AWS IoT's thing policies require, so each connection
    takes the device's previous one over: two clients of one device keep knocking each other
    off. A mutual TLS connection has no 24 h limit, so it is not renewed at
    ``max_connection_age_s`` (a renewal would only race the old connection for the id).
    """

    def __init__(
        self,
        api_url: str,
        device: X509,
        options: ClientOptions,
        *,
        clock: Callable[[], float] = time.time,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.device = device
        self.iot_ca_file = device.ca_file or options.ca_file
        super().__init__(
            api_url,
            device.thing_name,
            device.region,
            device.topic_prefix,
            DeviceCredentialSource(
                device,
                ca_file=self.iot_ca_file,
                refresh_margin_s=options.refresh_margin_s,
                clock=clock,
            ),
            options,
            context,
        )

    def new_transport(self, events: TransportEvents) -> PushTransport:
        """An MQTT 5 (or v1) transport over mutual TLS, as the thing."""
        device = self.device
        kind = V1Transport if self.options.transport == "v1" else Mqtt5Transport
        return kind(
            events,
            None,
            TransportSettings(
                endpoint=device.endpoint,
                port=device.port,
                region=device.region,
                ca_file=self.iot_ca_file,
                client_id=device.thing_name,
                min_backoff_ms=self.options.min_backoff_ms,
                max_backoff_ms=self.options.max_backoff_ms,
                keep_alive_s=self.options.keep_alive_s,
                certificate=(device.cert_file, device.key_file),
            ),
        )


class GreengrassService(_ThingService):
    """The real stack for a Greengrass v2 component: the core device's thing is the identity,
    the token exchange service's credentials sign the channels API, and pushes come through
    the nucleus's IPC (:class:`~client_sdk._greengrass.GreengrassTransport`).

    The nucleus holds the core's one connection to AWS IoT: it is not the component's to
    renew (``connection_expires`` False), and its losses are invisible here
    (``push_may_miss`` True).
    """

    push_may_miss = True

    def __init__(
        self,
        api_url: str,
        core: GreengrassCore,
        options: ClientOptions,
        *,
        clock: Callable[[], float] = time.time,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.core = core
        super().__init__(
            api_url,
            core.thing_name,
            core.region,
            core.topic_prefix,
            ContainerCredentialSource(
                core.credentials_uri,
                core.authorization_token,
                refresh_margin_s=options.refresh_margin_s,
                clock=clock,
            ),
            options,
            context,
        )

    def new_transport(self, events: TransportEvents) -> PushTransport:
        """The nucleus's MQTT proxy over IPC."""
        return GreengrassTransport(
            events,
            self.core,
            min_backoff_ms=self.options.min_backoff_ms,
            max_backoff_ms=self.options.max_backoff_ms,
        )


def aws_service(
    api_url: str, sign_in: SignIn, options: ClientOptions
) -> AwsService | DeviceService | GreengrassService:
    """The real service for ``sign_in``: a device's for :class:`X509`, a component's for
    :class:`GreengrassCore`, a user's otherwise.

    Raises :class:`ValueError` for ``transport="greengrass"`` without a ``GreengrassCore``
    sign-in, or a ``GreengrassCore`` with another transport (``"poll"`` included: poll mode
    is for the other sign-ins; a component's changes come through the nucleus).
    """
    if isinstance(sign_in, GreengrassCore):
        if options.transport in ("v1", "poll"):
            raise ValueError(
                "GreengrassCore pushes through the nucleus's IPC: use transport='greengrass' "
                f"(or leave the default), not {options.transport!r}"
            )
        return GreengrassService(api_url, sign_in, options)
    if options.transport == "greengrass":
        raise ValueError(
            "transport='greengrass' is for a Greengrass v2 component: sign in with "
            "GreengrassCore.from_environment()"
        )
    if isinstance(sign_in, X509):
        return DeviceService(api_url, sign_in, options)
    return AwsService(api_url, sign_in, options)
