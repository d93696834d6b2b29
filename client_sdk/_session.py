"""Signing in and keeping temporary AWS credentials fresh.

``POST /v1/login`` returns an OpenID token for the user's Cognito identity; the token is
exchanged with ``GetCredentialsForIdentity`` (an unsigned JSON call) for temporary AWS
credentials. :class:`CredentialSource` refreshes them before they expire and signs in again
when the token itself runs out, so every reconnect and every API call signs with valid
credentials. The clock is injected so the lifecycle is tested without waiting.

A sign-in the service refuses (:class:`SignInFailed`, not a throttle) is remembered in
:attr:`CredentialSource.refused`: the client then stops reconnecting and says it is signed out.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from client_sdk._errors import (
    BadRequest,
    ConnectTimeout,
    RateLimited,
    ServiceUnavailable,
    SignInFailed,
)
from client_sdk._http import InFlight, request_json

__all__ = ["AwsCredentials", "CredentialProvider", "CredentialSource", "LoginResult", "login"]

Clock = Callable[[], float]


@dataclass(frozen=True)
class LoginResult:
    """What ``/v1/login`` answered."""

    identity_id: str
    token: str
    expires_at: float
    region: str
    identity_pool_id: str
    iot_endpoint: str
    iot_port: int
    topic_prefix: str
    api_url: str
    channels: tuple[str, ...]


@dataclass(frozen=True)
class AwsCredentials:
    """Temporary credentials and when they expire (epoch seconds)."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: float


class CredentialProvider(Protocol):
    """Where the channels API and the WebSocket transports get credentials: a signed-in
    user's (:class:`CredentialSource`) or an X.509 device's (the AWS IoT credentials
    provider, :class:`~client_sdk._iot_credentials.DeviceCredentialSource`)."""

    refused: SignInFailed | None
    logins: int
    refreshes: int
    timeout: float

    def get(self) -> AwsCredentials:
        """Credentials valid for at least the refresh margin (refreshing if needed)."""
        ...

    def invalidate(self) -> None:
        """Forget the cached credentials (after a 403 that says they are expired)."""
        ...

    def close(self) -> None:
        """End the requests under way and refuse new ones."""
        ...


def parse_time(value: Any) -> float:
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def unreachable(url: str, exc: OSError) -> ServiceUnavailable:
    if isinstance(exc, TimeoutError):
        return ConnectTimeout(f"{url} did not answer in time: {exc}")
    return ServiceUnavailable(f"cannot reach {url}: {exc}")


def login(
    api_url: str,
    body: Mapping[str, Any],
    context: ssl.SSLContext | None,
    timeout: float = 30.0,
    in_flight: InFlight | None = None,
) -> LoginResult:
    """Sign in; raises :class:`SignInFailed` (or :class:`RateLimited`) when refused,
    :class:`ServiceUnavailable` (:class:`ConnectTimeout` after ``timeout``) when unreachable."""
    url = api_url.rstrip("/") + "/v1/login"
    try:
        response = request_json(
            "POST",
            url,
            body=json.dumps(dict(body)).encode(),
            headers={"Content-Type": "application/json"},
            context=context,
            timeout=timeout,
            in_flight=in_flight,
        )
    except OSError as exc:
        raise unreachable(url, exc) from exc
    answer = response.body if isinstance(response.body, dict) else {}
    message = str(answer.get("message") or f"login answered HTTP {response.status}")
    if response.status == 429:
        raise RateLimited(message, float(response.headers.get("retry-after", "60")))
    if response.status in (401, 403):
        raise SignInFailed(message)
    if response.status == 400:
        raise BadRequest(message)
    if response.status != 200:
        raise ServiceUnavailable(message)
    try:
        iot = answer["iot"]
        return LoginResult(
            identity_id=answer["identityId"],
            token=answer["token"],
            expires_at=parse_time(answer["expiresAt"]),
            region=answer["region"],
            identity_pool_id=answer.get("identityPoolId", ""),
            iot_endpoint=iot["endpoint"],
            iot_port=int(iot.get("port", 443)),
            topic_prefix=iot["topicPrefix"],
            api_url=answer["api"]["url"],
            channels=tuple(answer.get("channels") or ()),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServiceUnavailable(f"the login answer is missing {exc}") from exc


class CredentialSource:
    """Current credentials for the signed-in identity, refreshed ahead of expiry."""

    def __init__(
        self,
        api_url: str,
        login_body: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        *,
        context: ssl.SSLContext | None,
        cognito_endpoint: str | None = None,
        refresh_margin_s: float = 300.0,
        clock: Clock = time.time,
        timeout: float = 30.0,
    ) -> None:
        self.api_url = api_url
        self._login_body = login_body if callable(login_body) else dict(login_body)
        self._context = context
        self._cognito_endpoint = cognito_endpoint
        self.refresh_margin_s = refresh_margin_s
        self.clock = clock
        self.timeout = timeout
        self.in_flight = InFlight()
        self._lock = threading.Lock()
        self._session: LoginResult | None = None
        self._credentials: AwsCredentials | None = None
        self.refused: SignInFailed | None = None
        """The last sign-in refusal (a throttle aside); None once a sign-in succeeds."""
        self.logins = 0
        self.refreshes = 0

    def _body(self) -> Mapping[str, Any]:
        body = self._login_body
        return body() if callable(body) else body

    def _login(self) -> LoginResult:
        try:
            session = login(self.api_url, self._body(), self._context, self.timeout, self.in_flight)
        except RateLimited:
            raise
        except SignInFailed as exc:
            self.refused = exc
            raise
        self.refused = None
        return session

    @property
    def session(self) -> LoginResult:
        """The current login (signing in first if needed)."""
        with self._lock:
            return self._ensure_session()

    def _ensure_session(self) -> LoginResult:
        session = self._session
        if session is None or session.expires_at - self.refresh_margin_s <= self.clock():
            session = self._login()
            self._session = session
            self.logins += 1
        return session

    def cognito_endpoint(self, region: str) -> str:
        """Where ``GetCredentialsForIdentity`` goes."""
        return self._cognito_endpoint or f"https://cognito-identity.{region}.amazonaws.com/"

    def get(self) -> AwsCredentials:
        """Credentials valid for at least the refresh margin (refreshing if needed)."""
        with self._lock:
            credentials = self._credentials
            if credentials is not None and (
                credentials.expiration - self.refresh_margin_s > self.clock()
            ):
                return credentials
            session = self._ensure_session()
            try:
                credentials = self._exchange(session)
            except SignInFailed:
                # the token was refused (expired early, identity reset): sign in again once
                self._session = None
                session = self._ensure_session()
                try:
                    credentials = self._exchange(session)
                except SignInFailed as exc:
                    self.refused = exc
                    raise
            self._credentials = credentials
            self.refreshes += 1
            return credentials

    def close(self) -> None:
        """End the requests under way (sign-in, credentials) and refuse new ones."""
        self.in_flight.abort()

    def invalidate(self) -> None:
        """Forget the cached credentials (after a 403 that says they are expired)."""
        with self._lock:
            self._credentials = None

    def _exchange(self, session: LoginResult) -> AwsCredentials:
        body = json.dumps(
            {
                "IdentityId": session.identity_id,
                "Logins": {"cognito-identity.amazonaws.com": session.token},
            }
        ).encode()
        url = self.cognito_endpoint(session.region)
        try:
            response = request_json(
                "POST",
                url,
                body=body,
                context=self._context,
                headers={
                    "Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": "AWSCognitoIdentityService.GetCredentialsForIdentity",
                },
                timeout=self.timeout,
                in_flight=self.in_flight,
            )
        except OSError as exc:
            raise unreachable(url, exc) from exc
        answer = response.body if isinstance(response.body, dict) else {}
        if response.status != 200:
            kind = str(answer.get("__type", ""))
            message = str(answer.get("message") or f"HTTP {response.status}")
            if "NotAuthorized" in kind or response.status in (400, 401, 403):
                raise SignInFailed(f"GetCredentialsForIdentity refused the token: {message}")
            raise ServiceUnavailable(f"GetCredentialsForIdentity failed: {message}")
        raw = answer["Credentials"]
        return AwsCredentials(
            raw["AccessKeyId"],
            raw["SecretKey"],
            raw["SessionToken"],
            parse_time(raw["Expiration"]),
        )
