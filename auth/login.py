"""``POST /v1/login``: check who the caller is, then hand out a Cognito OpenID token.

:func:`parse_login_body` turns the request body into one of three typed requests (or a 400
naming what is wrong); :class:`LoginService` checks the credentials, obtains the token with
``GetOpenIdTokenForDeveloperIdentity``, makes sure the identity has its IoT policies (attached
on the first login only, remembered in the users table), and returns the answer. Nothing here
sees an API Gateway event; :mod:`auth.http` is that edge.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from auth.errors import BadRequest, InvalidCredentials, UpstreamError
from auth.passwords import dummy_verify, hash_password, needs_rehash, verify_password
from auth.policies import PolicyScope, iot_policies, readable_channels
from auth.rate_limit import LoginThrottle
from auth.settings import AuthSettings
from auth.store import USERNAME, UsersStore, verify_device_secret
from auth.tokens import JwksCache, verify_id_token
from backend.access import Principal
from backend.routes import CHANNEL_SEGMENT, Route, load_routes

__all__ = [
    "MAX_BODY_BYTES",
    "DeviceLogin",
    "IdTokenLogin",
    "LoginService",
    "PasswordLogin",
    "parse_login_body",
]

log = logging.getLogger("tidings.auth")

MAX_BODY_BYTES = 32 * 1024
METHODS = ("password", "id_token", "device")


@dataclass(frozen=True)
class PasswordLogin:
    """``{"method": "password", "username", "password"}``."""

    username: str
    password: str


@dataclass(frozen=True)
class IdTokenLogin:
    """``{"method": "id_token", "id_token"}``."""

    id_token: str


@dataclass(frozen=True)
class DeviceLogin:
    """``{"method": "device", "thing_name", "secret"}``."""

    thing_name: str
    secret: str


LoginRequest = PasswordLogin | IdTokenLogin | DeviceLogin

_FIELDS: dict[str, tuple[tuple[str, int], ...]] = {
    "password": (("username", 128), ("password", 1024)),
    "id_token": (("id_token", 16384),),
    "device": (("thing_name", 128), ("secret", 512)),
}


def parse_login_body(body: bytes | str | None) -> LoginRequest:
    """The typed login request in ``body``, or :class:`BadRequest` naming the problem."""
    if body is None or len(body) == 0:
        raise BadRequest(
            "missing_body",
            "The request has no body; send JSON such as "
            '{"method": "password", "username": "...", "password": "..."}.',
        )
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest("body_too_large", f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid_json", f"The body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise BadRequest(
            "invalid_json", "The body nests JSON too deeply; send one flat JSON object."
        ) from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_body", "The body must be a JSON object.")
    method = data.get("method")
    if method is None:
        raise BadRequest(
            "missing_method", f"The body has no 'method'; use one of {', '.join(METHODS)}."
        )
    if not isinstance(method, str) or method not in _FIELDS:
        raise BadRequest(
            "unknown_method", f"Unknown method {method!r}; use one of {', '.join(METHODS)}."
        )
    fields = _FIELDS[method]
    unknown = sorted(set(data) - {"method"} - {name for name, _ in fields})
    if unknown:
        raise BadRequest(
            "unknown_field",
            f"Unknown field(s) for method {method!r}: {', '.join(map(str, unknown))}.",
        )
    values: list[str] = []
    for name, limit in fields:
        value = data.get(name)
        if value is None:
            raise BadRequest("missing_field", f"Method {method!r} needs the field {name!r}.")
        if not isinstance(value, str):
            raise BadRequest("invalid_field", f"The field {name!r} must be a string.")
        if not value:
            raise BadRequest("empty_field", f"The field {name!r} is empty.")
        if len(value) > limit:
            raise BadRequest(
                "field_too_long", f"The field {name!r} is longer than {limit} characters."
            )
        values.append(value)
    if method == "password":
        if not USERNAME.match(values[0]):
            raise BadRequest(
                "invalid_username",
                "The field 'username' may contain only letters, digits and _ . @ + -.",
            )
        return PasswordLogin(values[0], values[1])
    if method == "id_token":
        return IdTokenLogin(values[0])
    return DeviceLogin(values[0], values[1])


class LoginService:
    """Checks credentials and vends OpenID tokens. Clients are created lazily or injected."""

    def __init__(
        self,
        settings: AuthSettings,
        *,
        dynamodb: Any = None,
        cognito: Any = None,
        iot: Any = None,
        jwks: JwksCache | None = None,
        routes: Sequence[Route] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._dynamodb = dynamodb
        self._cognito = cognito
        self._iot = iot
        self.jwks = jwks if jwks is not None else JwksCache()
        self._routes = tuple(routes) if routes is not None else None
        self.clock = clock
        self._store: UsersStore | None = None
        self.scope = PolicyScope(
            settings.region, settings.account_id, settings.stage, settings.policy_prefix
        )

    # --- lazily created dependencies ---------------------------------------------------

    def _client(self, service: str) -> Any:
        import boto3

        session = boto3.session.Session(region_name=self.settings.region)
        return session.client(service)  # type: ignore[call-overload]

    @property
    def cognito(self) -> Any:
        """The ``cognito-identity`` client."""
        if self._cognito is None:
            self._cognito = self._client("cognito-identity")
        return self._cognito

    @property
    def iot(self) -> Any:
        """The ``iot`` control-plane client."""
        if self._iot is None:
            self._iot = self._client("iot")
        return self._iot

    @property
    def store(self) -> UsersStore:
        """The sign-in table."""
        if self._store is None:
            if self._dynamodb is None:
                self._dynamodb = self._client("dynamodb")
            self._store = UsersStore(self._dynamodb, self.settings.users_table)
        return self._store

    @property
    def routes(self) -> tuple[Route, ...]:
        """The route rules (loaded once from ``settings.routes_file``)."""
        if self._routes is None:
            self._routes = load_routes(self.settings.routes_file)
        return self._routes

    # --- the login -------------------------------------------------------------------

    def login(self, body: bytes | str | None, source_ip: str) -> dict[str, Any]:
        """Handle one login request body from ``source_ip``; the JSON answer on success."""
        request = parse_login_body(body)
        throttle = LoginThrottle(self.store, self.settings.rate_limits, self.clock)
        account: str | None = None
        if isinstance(request, PasswordLogin):
            account = f"user:{request.username}"
        elif isinstance(request, DeviceLogin):
            account = f"device:{request.thing_name}"
        # the attempt is counted before the credentials are looked at: parallel guesses
        # beyond a bucket's limit are refused without a check (auth/rate_limit.py)
        reservation = throttle.reserve(source_ip, account)
        try:
            user_id, tenants = self._authenticate(request)
        except InvalidCredentials as exc:
            log.info("login refused (%s) from %s", exc.reason, source_ip)
            raise
        except BaseException:
            reservation.release()  # not a wrong guess: the store or an issuer failed
            raise
        throttle.succeeded(reservation, source_ip, account)
        return self.issue(user_id, tenants)

    def _authenticate(self, request: LoginRequest) -> tuple[str, frozenset[str]]:
        if isinstance(request, PasswordLogin):
            account = self.store.get_user(request.username)
            if account is None:
                dummy_verify(request.password, self.settings.password_hash)
                raise InvalidCredentials("unknown user")
            if not verify_password(request.password, account.secret_hash):
                raise InvalidCredentials("wrong password")
            if needs_rehash(account.secret_hash, self.settings.password_hash):
                self.store.set_password_hash(
                    account.name, hash_password(request.password, self.settings.password_hash)
                )
            return account.user_id, account.tenants
        if isinstance(request, DeviceLogin):
            device = self.store.get_device(request.thing_name)
            if device is None or not verify_device_secret(request.secret, device.secret_hash):
                raise InvalidCredentials("unknown device or wrong secret")
            return device.user_id, device.tenants
        issuer, claims = verify_id_token(request.id_token, self.settings.oidc_issuers, self.jwks)
        digest = hashlib.sha256(f"{issuer.issuer}|{claims['sub']}".encode()).hexdigest()[:40]
        groups = claims.get(issuer.groups_claim, [])
        if isinstance(groups, str):
            groups = groups.split(",")
        elif not isinstance(groups, list):
            groups = []
        tenants = frozenset(g for g in groups if isinstance(g, str) and CHANNEL_SEGMENT.match(g))
        return f"oidc-{digest}", tenants

    def issue(self, user_id: str, tenants: frozenset[str]) -> dict[str, Any]:
        """Get the OpenID token for ``user_id``, ensure its IoT policies, build the answer."""
        settings = self.settings
        try:
            answer = self.cognito.get_open_id_token_for_developer_identity(
                IdentityPoolId=settings.identity_pool_id,
                Logins={settings.developer_provider: user_id},
                TokenDuration=settings.token_duration_s,
            )
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"Cognito Identity refused the token request: {exc}") from exc
        identity_id: str = answer["IdentityId"]
        self.ensure_policies(identity_id, tenants)
        expires = datetime.fromtimestamp(self.clock() + settings.token_duration_s, tz=UTC)
        principal = Principal(identity_id, tenants)
        return {
            "identityId": identity_id,
            "token": answer["Token"],
            "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": settings.region,
            "identityPoolId": settings.identity_pool_id,
            "iot": {
                "endpoint": settings.iot_endpoint,
                "port": settings.iot_port,
                "topicPrefix": settings.topic_prefix,
            },
            "api": {"url": settings.api_url},
            "channels": readable_channels(self.routes, principal),
        }

    def ensure_policies(self, identity_id: str, tenants: frozenset[str]) -> None:
        """Attach the IoT policies ``identity_id`` needs and detach those it no longer does.

        What is attached is recorded in the users table, so a returning identity costs no
        IoT call at all (AttachPolicy is limited to 15 requests per second per account).
        """
        wanted = iot_policies(self.routes, self.scope, tenants)
        recorded, recorded_tenants = self.store.identity_record(identity_id)
        if recorded == frozenset(wanted) and recorded_tenants == tenants:
            return
        try:
            for name in sorted(set(wanted) - recorded):
                self._attach(name, wanted[name], identity_id)
            for name in sorted(recorded - set(wanted)):
                try:
                    self.iot.detach_policy(policyName=name, target=identity_id)
                except ClientError as exc:
                    if _code(exc) != "ResourceNotFoundException":
                        raise
        except (ClientError, BotoCoreError) as exc:
            raise UpstreamError(f"AWS IoT refused to attach the identity's policy: {exc}") from exc
        self.store.record_identity(identity_id, frozenset(wanted), tenants)

    def _attach(self, name: str, document: Mapping[str, Any], identity_id: str) -> None:
        try:
            self.iot.attach_policy(policyName=name, target=identity_id)
            return
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise
        try:
            self.iot.create_policy(policyName=name, policyDocument=json.dumps(document))
        except ClientError as exc:
            if _code(exc) != "ResourceAlreadyExistsException":
                raise
        self.iot.attach_policy(policyName=name, target=identity_id)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
