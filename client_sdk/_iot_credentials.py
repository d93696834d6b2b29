"""An X.509 device's AWS credentials, from the AWS IoT credentials provider.

A device has no ``/v1/login``: it calls ``GET https://<credentials endpoint>/role-aliases/
<alias>/credentials`` over mutual TLS with its certificate, naming its thing in the
``x-amzn-iot-thingname`` header, and gets the temporary credentials of the role the alias
points to::

    {"credentials": {"accessKeyId": "ASIA…", "secretAccessKey": "…",
                     "sessionToken": "…", "expiration": "2026-11-29T06:00:00Z"}}

The request goes through the standard library (``ssl.SSLContext.load_cert_chain``): awscrt's
``AwsCredentialsProvider.new_x509`` connects to port 443 only. :class:`DeviceCredentialSource`
has the interface of :class:`~client_sdk._session.CredentialSource` (the channels API signs
with it) and renews the credentials before they expire. The certificate files are read again
at each renewal, so a device that rotates its certificate on disk goes on with the new one.

A refusal that will not go away by retrying (the certificate unknown, inactive or not
attached to the thing; the role alias missing or not allowed) is :class:`SignInFailed` and
is remembered in :attr:`DeviceCredentialSource.refused`: the client then says it is signed
out, as when a user's sign-in is refused.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from client_sdk._errors import RateLimited, ServiceUnavailable, SignInFailed
from client_sdk._http import HttpResponse, InFlight, request_json
from client_sdk._session import AwsCredentials, parse_time, unreachable
from client_sdk._signin import X509

__all__ = [
    "ContainerCredentialSource",
    "DeviceCredentialSource",
    "RenewingCredentials",
    "credentials_from_answer",
    "device_tls_context",
]

Clock = Callable[[], float]

# TLS alerts a server sends when it will not accept the client's certificate (OpenSSL's
# reason names): retrying with the same certificate cannot help.
_CERTIFICATE_REFUSED = frozenset(
    {
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)


def device_tls_context(device: X509, ca_file: str | None) -> ssl.SSLContext:
    """A TLS context that trusts ``ca_file`` (None: the system store) and presents the
    device's certificate. Raises ``FileNotFoundError`` for a missing file and ``ValueError``
    for a certificate and key that do not load (or do not match)."""
    context = (
        ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    )
    try:
        context.load_cert_chain(device.cert_file, device.key_file)
    except ssl.SSLError as exc:
        raise ValueError(
            f"X509: cannot use the certificate {device.cert_file} with the key "
            f"{device.key_file}: {exc}"
        ) from exc
    return context


def credentials_from_answer(response: HttpResponse, thing_name: str) -> AwsCredentials:
    """The credentials in the credentials provider's answer, or the error it means.

    Raises :class:`RateLimited` (429), :class:`SignInFailed` (any other 4xx: the certificate,
    the thing or the role alias was refused), :class:`ServiceUnavailable` (5xx, or an answer
    without credentials).
    """
    body = response.body if isinstance(response.body, dict) else {}
    status = response.status
    if status != 200:
        message = str(body.get("message") or f"HTTP {status}")
        kind = response.headers.get("x-amzn-errortype", "")
        detail = f"{message} (HTTP {status}{', ' + kind if kind else ''})"
        if status == 429:
            retry = str(response.headers.get("retry-after") or "")
            seconds = float(retry) if retry.isascii() and retry.isdigit() else 1.0
            raise RateLimited(f"the AWS IoT credentials provider: {detail}", seconds)
        if 400 <= status < 500:
            raise SignInFailed(
                f"the AWS IoT credentials provider refused the thing {thing_name!r}: {detail}"
            )
        raise ServiceUnavailable(f"the AWS IoT credentials provider failed: {detail}")
    try:
        return _credentials(
            body["credentials"], ("accessKeyId", "secretAccessKey", "sessionToken", "expiration")
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceUnavailable(
            f"the AWS IoT credentials provider's answer has no credentials ({exc!r})"
        ) from exc


def _credentials(raw: Mapping[str, Any], names: tuple[str, str, str, str]) -> AwsCredentials:
    """Credentials from an answer whose key, secret, token and expiration are ``names``;
    ``KeyError``/``TypeError``/``ValueError`` when one is missing or empty."""
    key, secret, token, expiration = names
    return AwsCredentials(
        access_key_id=_text(raw, key),
        secret_access_key=_text(raw, secret),
        session_token=_text(raw, token),
        expiration=parse_time(raw[expiration]),
    )


def _text(raw: Mapping[str, Any], name: str) -> str:
    value = raw[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is not a non-empty string")
    return value


class RenewingCredentials:
    """Temporary credentials fetched by :meth:`_fetch` and renewed ahead of expiry
    (thread-safe), with the interface of :class:`~client_sdk._session.CredentialSource`:
    ``get``, ``invalidate``, ``close``, ``refused``, and the counters ``logins`` (always 0:
    nobody signs in) and ``refreshes``."""

    def __init__(
        self, *, refresh_margin_s: float = 300.0, clock: Clock = time.time, timeout: float = 30.0
    ) -> None:
        self.refresh_margin_s = refresh_margin_s
        self.clock = clock
        self.timeout = timeout
        self.in_flight = InFlight()
        self._lock = threading.Lock()
        self._credentials: AwsCredentials | None = None
        self._renew_at = 0.0
        self.refused: SignInFailed | None = None
        """The last refusal (a throttle aside); None once credentials were issued."""
        self.logins = 0
        self.refreshes = 0

    def get(self) -> AwsCredentials:
        """Credentials valid for at least the refresh margin (fetching if needed).

        Credentials that live shorter than twice the margin are renewed at half their life.
        """
        with self._lock:
            now = self.clock()
            credentials = self._credentials
            if credentials is not None and now < self._renew_at:
                return credentials
            credentials = self._fetch()
            lifetime = max(0.0, credentials.expiration - now)
            self._renew_at = credentials.expiration - min(self.refresh_margin_s, lifetime / 2)
            self._credentials = credentials
            self.refreshes += 1
            return credentials

    def invalidate(self) -> None:
        """Forget the cached credentials (after a 403 that says they are expired)."""
        with self._lock:
            self._credentials = None

    def close(self) -> None:
        """End the request under way and refuse new ones."""
        self.in_flight.abort()

    def _fetch(self) -> AwsCredentials:
        raise NotImplementedError


class DeviceCredentialSource(RenewingCredentials):
    """An X.509 device's role credentials from the AWS IoT credentials provider."""

    def __init__(
        self,
        device: X509,
        *,
        ca_file: str | None,
        refresh_margin_s: float = 300.0,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(refresh_margin_s=refresh_margin_s, clock=clock, timeout=timeout)
        self.device = device
        self.ca_file = ca_file
        device_tls_context(device, ca_file)  # a missing or broken file fails here, at once

    def _fetch(self) -> AwsCredentials:
        device = self.device
        url = device.credentials_url
        try:
            response = request_json(
                "GET",
                url,
                headers={"x-amzn-iot-thingname": device.thing_name},
                context=device_tls_context(device, self.ca_file),
                timeout=self.timeout,
                in_flight=self.in_flight,
            )
        except ssl.SSLError as exc:
            if exc.reason in _CERTIFICATE_REFUSED:
                refused = SignInFailed(
                    f"the AWS IoT credentials provider refused the certificate of "
                    f"{device.thing_name!r} ({exc.reason})"
                )
                self.refused = refused
                raise refused from exc
            raise unreachable(url, exc) from exc
        except OSError as exc:
            raise unreachable(url, exc) from exc
        try:
            credentials = credentials_from_answer(response, device.thing_name)
        except RateLimited:
            raise
        except SignInFailed as exc:
            self.refused = exc
            raise
        self.refused = None
        return credentials


class ContainerCredentialSource(RenewingCredentials):
    """A Greengrass component's credentials from the nucleus's token exchange service.

    ``GET <AWS_CONTAINER_CREDENTIALS_FULL_URI>`` with ``Authorization:
    <AWS_CONTAINER_AUTHORIZATION_TOKEN>`` answers the container-credentials shape
    (``{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}``) with the credentials of
    the core device's role alias; the service gets them from the AWS IoT credentials provider
    with the core's certificate, so the channels API sees the core device's thing.
    """

    def __init__(
        self,
        uri: str,
        authorization_token: str,
        *,
        refresh_margin_s: float = 300.0,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(refresh_margin_s=refresh_margin_s, clock=clock, timeout=timeout)
        self.uri = uri
        self._token = authorization_token

    def _fetch(self) -> AwsCredentials:
        try:
            response = request_json(
                "GET",
                self.uri,
                headers={"Authorization": self._token},
                timeout=self.timeout,
                in_flight=self.in_flight,
            )
        except OSError as exc:
            raise unreachable(self.uri, exc) from exc
        body = response.body if isinstance(response.body, dict) else {}
        if response.status != 200:
            message = str(body.get("message") or body.get("Message") or f"HTTP {response.status}")
            detail = f"the token exchange service ({self.uri}): {message} (HTTP {response.status})"
            if response.status in (401, 403):
                refused = SignInFailed(f"{detail}: the component's token was refused")
                self.refused = refused
                raise refused
            raise ServiceUnavailable(detail)
        try:
            credentials = _credentials(
                body, ("AccessKeyId", "SecretAccessKey", "Token", "Expiration")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ServiceUnavailable(
                f"the token exchange service's answer has no credentials ({exc!r})"
            ) from exc
        self.refused = None
        return credentials
