"""The sign-in service's configuration: one frozen object built from the environment here.

Every environment variable the ``auth`` package reads is named in :data:`ENV`; nothing else in
the package touches ``os.environ``. Endpoints and credentials for AWS come from the standard
AWS settings (``AWS_ENDPOINT_URL_<SERVICE>``, ``AWS_REGION``, ...), which boto3 reads itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auth.errors import ConfigurationError

__all__ = ["ENV", "AuthSettings", "OidcIssuer", "RateLimits"]

ENV = {
    "users_table": "TIDINGS_TABLE_USERSTABLE",
    "identity_pool_id": "TIDINGS_IDENTITY_POOL_ID",
    "developer_provider": "TIDINGS_DEVELOPER_PROVIDER",
    "token_duration_s": "TIDINGS_TOKEN_DURATION_S",
    "stage": "TIDINGS_STAGE",
    "account_id": "TIDINGS_ACCOUNT_ID",
    "iot_endpoint": "TIDINGS_IOT_ENDPOINT",
    "iot_port": "TIDINGS_IOT_PORT",
    "api_url": "TIDINGS_API_URL",
    "routes_file": "TIDINGS_ROUTES_FILE",
    "iot_policy_prefix": "TIDINGS_IOT_POLICY_PREFIX",
    "oidc_issuers": "TIDINGS_OIDC_ISSUERS",
    "password_hash": "TIDINGS_PASSWORD_HASH",
    "account_address_max_failures": "TIDINGS_LOGIN_ACCOUNT_ADDRESS_MAX_FAILURES",
    "account_hourly_max_failures": "TIDINGS_LOGIN_ACCOUNT_HOURLY_MAX_FAILURES",
    "address_max_failures": "TIDINGS_LOGIN_ADDRESS_MAX_FAILURES",
    "failure_window_s": "TIDINGS_LOGIN_FAILURE_WINDOW_S",
    "known_address_days": "TIDINGS_LOGIN_KNOWN_ADDRESS_DAYS",
    "allowed_origin": "TIDINGS_ALLOWED_ORIGIN",
    "region": "AWS_REGION",
    "default_region": "AWS_DEFAULT_REGION",
}
"""Setting name → environment variable. The single place these names are spelled."""

DEFAULT_ROUTES_FILE = Path(__file__).resolve().parent.parent / "infra" / "routes.yaml"
"""Used when ``TIDINGS_ROUTES_FILE`` is unset: the routes file beside the packages, where the
Lambda zip (``/var/task/infra/routes.yaml``), the installed wheel (package data of ``infra``)
and a checkout all keep it. Named by place because ``auth`` never imports ``infra`` (the
Lambda zip has no ``infra`` package, only this file)."""
PASSWORD_HASHES = ("argon2id", "scrypt")


@dataclass(frozen=True)
class OidcIssuer:
    """An external issuer whose JWTs ``id_token`` logins accept.

    ``issuer`` is compared exactly with the ``iss`` claim; ``audiences`` with ``aud`` (ID
    tokens) or ``client_id`` (access tokens); ``token_use`` lists accepted ``token_use`` claim
    values (Cognito user pools set it; an empty tuple means the claim is not required).
    ``groups_claim`` names the claim whose values become the identity's tenants.
    """

    issuer: str
    audiences: tuple[str, ...]
    jwks_uri: str
    algorithms: tuple[str, ...] = ("RS256",)
    token_use: tuple[str, ...] = ("id",)
    groups_claim: str = "cognito:groups"

    @classmethod
    def from_dict(cls, data: Any, where: str = ENV["oidc_issuers"]) -> OidcIssuer:
        """Build from the JSON form ``{"issuer", "audiences", "jwks_uri"?, ...}``."""
        if not isinstance(data, dict):
            raise ConfigurationError(f"{where}: each issuer must be a JSON object")
        issuer = data.get("issuer")
        audiences = data.get("audiences")
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            raise ConfigurationError(f"{where}: 'issuer' must be the issuer URL")
        if (
            not isinstance(audiences, list)
            or not audiences
            or not all(isinstance(a, str) and a for a in audiences)
        ):
            raise ConfigurationError(f"{where}: 'audiences' must be a non-empty list of strings")
        jwks_uri = data.get("jwks_uri") or issuer.rstrip("/") + "/.well-known/jwks.json"
        algorithms = tuple(data.get("algorithms", ["RS256"]))
        allowed = {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256"}
        if not algorithms or not set(algorithms) <= allowed:
            raise ConfigurationError(
                f"{where}: 'algorithms' must be asymmetric ones from {sorted(allowed)}"
            )
        token_use = tuple(data.get("token_use", ["id"]))
        return cls(
            issuer=issuer,
            audiences=tuple(audiences),
            jwks_uri=str(jwks_uri),
            algorithms=algorithms,
            token_use=token_use,
            groups_claim=str(data.get("groups_claim", "cognito:groups")),
        )


RETIRED = {
    "TIDINGS_LOGIN_USER_MAX_FAILURES": "TIDINGS_LOGIN_ACCOUNT_ADDRESS_MAX_FAILURES (per account "
    "and address) and TIDINGS_LOGIN_ACCOUNT_HOURLY_MAX_FAILURES (per account, per hour)",
    "TIDINGS_LOGIN_LOCKOUT_S": "TIDINGS_LOGIN_FAILURE_WINDOW_S (a full bucket stays closed "
    "until its window ends)",
}
"""Variables that no longer have an effect → what replaced them (a set one fails loudly)."""


@dataclass(frozen=True)
class RateLimits:
    """Sign-in attempt limits (:mod:`auth.rate_limit` describes the buckets).

    ``account_address_max_failures`` and ``address_max_failures`` count within ``window_s``;
    ``account_hourly_max_failures`` counts per hour the guesses at one account from addresses
    that have not signed in to it within ``known_address_days``.
    """

    account_address_max_failures: int = 5
    account_hourly_max_failures: int = 30
    address_max_failures: int = 50
    window_s: float = 900.0
    known_address_days: int = 30


@dataclass(frozen=True)
class AuthSettings:
    """Everything the login service needs to know about its deployment."""

    users_table: str
    identity_pool_id: str
    region: str
    account_id: str
    iot_endpoint: str
    stage: str = "dev"
    developer_provider: str = "login.tidings"
    token_duration_s: int = 900
    iot_port: int = 443
    api_url: str = ""
    routes_file: Path = DEFAULT_ROUTES_FILE
    iot_policy_prefix: str = ""
    oidc_issuers: tuple[OidcIssuer, ...] = ()
    password_hash: str = "argon2id"
    rate_limits: RateLimits = field(default_factory=RateLimits)
    allowed_origin: str = ""
    """The one origin (or ``*``) whose pages may read the login's answers
    (``TIDINGS_ALLOWED_ORIGIN``, the template's ``AllowedOrigins``); "": no CORS headers."""

    @property
    def topic_prefix(self) -> str:
        """``tidings/<stage>/``: what every channel's topic starts with."""
        return f"tidings/{self.stage}/"

    @property
    def policy_prefix(self) -> str:
        """Prefix of the IoT policy names this stage creates and attaches."""
        return self.iot_policy_prefix or f"tidings-{self.stage}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        """Read the settings; a missing or malformed variable raises :class:`ConfigurationError`."""
        env = os.environ if environ is None else environ

        def required(name: str) -> str:
            value = env.get(ENV[name], "").strip()
            if not value:
                raise ConfigurationError(f"{ENV[name]} must be set")
            return value

        def integer(name: str, default: int, minimum: int, maximum: int) -> int:
            raw = env.get(ENV[name], "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ConfigurationError(f"{ENV[name]} must be an integer, not {raw!r}") from None
            if not minimum <= value <= maximum:
                raise ConfigurationError(f"{ENV[name]} must be between {minimum} and {maximum}")
            return value

        region = env.get(ENV["region"]) or env.get(ENV["default_region"])
        if not region:
            raise ConfigurationError(f"{ENV['region']} (or {ENV['default_region']}) must be set")
        password_hash = env.get(ENV["password_hash"], "argon2id")
        if password_hash not in PASSWORD_HASHES:
            raise ConfigurationError(f"{ENV['password_hash']} must be one of {PASSWORD_HASHES}")
        for name, replacement in RETIRED.items():
            if env.get(name, "").strip():
                raise ConfigurationError(f"{name} is no longer used; use {replacement}")
        defaults = RateLimits()
        return cls(
            users_table=required("users_table"),
            identity_pool_id=required("identity_pool_id"),
            region=region,
            account_id=required("account_id"),
            iot_endpoint=required("iot_endpoint"),
            stage=env.get(ENV["stage"], "dev") or "dev",
            developer_provider=env.get(ENV["developer_provider"], "") or "login.tidings",
            token_duration_s=integer("token_duration_s", 900, 60, 86400),
            iot_port=integer("iot_port", 443, 1, 65535),
            api_url=env.get(ENV["api_url"], ""),
            routes_file=Path(env.get(ENV["routes_file"], "") or DEFAULT_ROUTES_FILE),
            iot_policy_prefix=env.get(ENV["iot_policy_prefix"], ""),
            oidc_issuers=_issuers(env.get(ENV["oidc_issuers"], "")),
            password_hash=password_hash,
            allowed_origin=env.get(ENV["allowed_origin"], "").strip(),
            rate_limits=RateLimits(
                account_address_max_failures=integer(
                    "account_address_max_failures",
                    defaults.account_address_max_failures,
                    1,
                    10_000,
                ),
                account_hourly_max_failures=integer(
                    "account_hourly_max_failures", defaults.account_hourly_max_failures, 1, 100_000
                ),
                address_max_failures=integer(
                    "address_max_failures", defaults.address_max_failures, 1, 1_000_000
                ),
                window_s=integer("failure_window_s", int(defaults.window_s), 1, 86400),
                known_address_days=integer(
                    "known_address_days", defaults.known_address_days, 0, 3650
                ),
            ),
        )


def _issuers(raw: str) -> tuple[OidcIssuer, ...]:
    if not raw.strip():
        return ()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{ENV['oidc_issuers']} is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigurationError(f"{ENV['oidc_issuers']} must be a JSON list of issuers")
    return tuple(OidcIssuer.from_dict(item) for item in data)
