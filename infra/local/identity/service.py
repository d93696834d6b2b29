"""The local Cognito Identity (developer identities) and STS, over the real AWS protocols.

boto3 talks to it unchanged through ``AWS_ENDPOINT_URL_COGNITO_IDENTITY`` and
``AWS_ENDPOINT_URL_STS`` (or ``endpoint_url``); both services share one plain-HTTP port on
127.0.0.1:

- Cognito Identity (``awsJson1_1``, ``X-Amz-Target: AWSCognitoIdentityService.<Op>``):
  ``GetId``, ``GetOpenIdTokenForDeveloperIdentity`` and ``LookupDeveloperIdentity``
  (developer calls: SigV4-verified against the shared :class:`CredentialStore`, then
  authorised by the caller's IAM policies on the pool ARN), ``GetCredentialsForIdentity``
  (unsigned, as on AWS);
- STS (query protocol, XML answers): ``AssumeRoleWithWebIdentity`` with an optional inline
  session policy (the Cognito "basic" flow);
- ``GET /.well-known/jwks_uri`` and ``/.well-known/openid-configuration`` for the token keys.

Browsers call Cognito Identity directly (the AWS SDK for JavaScript signs in a web page with
``GetCredentialsForIdentity``), so, as on AWS, any origin may: a CORS preflight (``OPTIONS``)
gets 200 with :data:`CORS_PREFLIGHT_HEADERS`, and every answer carries
``Access-Control-Allow-Origin: *`` (:data:`CORS_HEADERS`). No credentials (cookies) are
involved, so ``*`` is enough.

The same (pool, developer provider, user id) always maps to the same identity id. OpenID
tokens are RS256 JWTs with Cognito's claims (``iss`` ``https://cognito-identity.amazonaws.com``,
``aud`` = pool id, ``sub`` = identity id, ``amr``). Credentials are random, expire
(``credential_lifetime_s``, 1 h by default) and go into the store together with the policies
that apply: ``policy_sets = [role policies, (session policy,) IoT policies attached to the
identity]``, with ``${cognito-identity.amazonaws.com:sub}`` as a variable.

Where the IoT policies come from: :func:`iot_control_plane_policies` asks the IoT control
plane (moto) with ``ListAttachedPolicies(target=identityId)`` and ``GetPolicy`` at every
credential mint, so what the login Lambda attached is what the gateway enforces. (moto
5.2.5 refuses ``AttachPolicy`` for identity ids its own cognito-identity did not issue;
``infra/local/motohost/fixes/iot_cognito.py`` makes it accept any Cognito identity id, as AWS does.)
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from infra.local.awsauth.credential_store import CredentialStore, PolicyDocument, StoredCredential
from infra.local.awsauth.iam_policy import PolicyError, is_allowed, validate_policy
from infra.local.awsauth.sigv4 import SignatureError, verify_authorization_header
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.net.http_server import HTTP_REFUSAL_TYPES, HttpRefusal, RefusingRequestHandler
from infra.local.net.service import ServerThread

__all__ = [
    "COGNITO_ISSUER",
    "CORS_HEADERS",
    "CORS_PREFLIGHT_HEADERS",
    "IdentityError",
    "IdentityPool",
    "IdentityService",
    "IdentityServiceConfig",
    "IdentityServiceThread",
    "iot_control_plane_policies",
]

log = logging.getLogger("tidings.identity")

COGNITO_ISSUER = "https://cognito-identity.amazonaws.com"
COGNITO_LOGIN = "cognito-identity.amazonaws.com"
TARGET_PREFIX = "AWSCognitoIdentityService."
STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
MAX_BODY_BYTES = 256 * 1024
SUB_KEY = "cognito-identity.amazonaws.com:sub"

IotPolicySource = Callable[[str], Sequence[PolicyDocument]]
"""identity id → the IoT policy documents attached to it."""


class IdentityError(Exception):
    """An API error: ``code`` is the AWS error code, ``status`` the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class IdentityPool:
    """One identity pool: its developer provider and the role of authenticated identities."""

    pool_id: str
    developer_provider: str
    authenticated_role_arn: str
    allow_unauthenticated: bool = False
    unauthenticated_role_arn: str | None = None


@dataclass(frozen=True)
class IdentityServiceConfig:
    """The pools, the roles' policy documents, and the service's knobs."""

    pools: tuple[IdentityPool, ...]
    roles: Mapping[str, Sequence[PolicyDocument]]
    """Role ARN → its IAM policy documents (from the template's role)."""
    region: str = "us-east-1"
    account_id: str = "123456789012"
    host: str = "127.0.0.1"
    port: int = 0
    credential_lifetime_s: float = 3600.0
    max_signature_skew_s: float = 300.0
    state_dir: Path | None = None
    """If set, the signing key and the identity map survive restarts (``identity/`` in it)."""
    issuer: str = COGNITO_ISSUER
    request_timeout_s: float = 10.0
    """How long a client may stall mid-request (a body shorter than its Content-Length, a
    half-sent head) before it gets a 400 or is dropped; also a kept-alive connection's idle
    time."""


@dataclass
class _Identity:
    identity_id: str
    pool_id: str
    logins: dict[str, str] = field(default_factory=dict)  # provider -> user id


def _no_iot_policies(_identity_id: str) -> Sequence[PolicyDocument]:
    return ()


class IdentityService:
    """The service's state and operations (no HTTP here; see :class:`IdentityServiceThread`)."""

    def __init__(
        self,
        config: IdentityServiceConfig,
        credentials: CredentialStore,
        *,
        iot_policies: IotPolicySource = _no_iot_policies,
        on_new_identity: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.credentials = credentials
        self.iot_policies = iot_policies
        self.on_new_identity = on_new_identity
        self.clock = clock
        self._lock = threading.Lock()
        self._pools = {pool.pool_id: pool for pool in config.pools}
        self._identities: dict[str, _Identity] = {}
        self._by_login: dict[tuple[str, str, str], str] = {}
        self._key = self._load_key()
        public_der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = hashlib.sha256(public_der).hexdigest()[:16]
        """Key id: derived from the public key, so a new key gets a new id."""
        self._public_key = self._key.public_key()
        self._load_identities()

    # --- persistence -------------------------------------------------------------------

    def _state(self, name: str) -> Path | None:
        if self.config.state_dir is None:
            return None
        directory = self.config.state_dir / "identity"
        directory.mkdir(parents=True, exist_ok=True)
        return directory / name

    def _load_key(self) -> rsa.RSAPrivateKey:
        path = self._state("signing-key.pem")
        if path is not None and path.exists():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(key, rsa.RSAPrivateKey):
                return key
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if path is not None:
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        return key

    def _load_identities(self) -> None:
        path = self._state("identities.json")
        if path is None or not path.exists():
            return
        for entry in json.loads(path.read_text(encoding="utf-8")):
            identity = _Identity(entry["identity_id"], entry["pool_id"], dict(entry["logins"]))
            self._identities[identity.identity_id] = identity
            for provider, user in identity.logins.items():
                self._by_login[(identity.pool_id, provider, user)] = identity.identity_id

    def _save_identities(self) -> None:
        path = self._state("identities.json")
        if path is None:
            return
        entries = [
            {"identity_id": i.identity_id, "pool_id": i.pool_id, "logins": i.logins}
            for i in self._identities.values()
        ]
        path.write_text(json.dumps(entries), encoding="utf-8")

    # --- identities --------------------------------------------------------------------

    def pool(self, pool_id: Any) -> IdentityPool:
        """The configured pool, or ``ResourceNotFoundException``."""
        if not isinstance(pool_id, str) or pool_id not in self._pools:
            raise IdentityError("ResourceNotFoundException", f"IdentityPool '{pool_id}' not found.")
        return self._pools[pool_id]

    def pool_arn(self, pool_id: str) -> str:
        """``arn:aws:cognito-identity:<region>:<account>:identitypool/<pool id>``."""
        return (
            f"arn:aws:cognito-identity:{self.config.region}:{self.config.account_id}:"
            f"identitypool/{pool_id}"
        )

    def _new_identity(self, pool_id: str) -> _Identity:
        identity = _Identity(f"{self.config.region}:{uuid.uuid4()}", pool_id)
        self._identities[identity.identity_id] = identity
        return identity

    def identity_for_login(self, pool_id: str, provider: str, user_id: str) -> str:
        """The identity id of (pool, provider, user id), created on first use."""
        created = None
        with self._lock:
            key = (pool_id, provider, user_id)
            identity_id = self._by_login.get(key)
            if identity_id is None:
                identity = self._new_identity(pool_id)
                identity.logins[provider] = user_id
                identity_id = self._by_login[key] = identity.identity_id
                self._save_identities()
                created = identity_id
        if created is not None and self.on_new_identity is not None:
            self.on_new_identity(pool_id, created)
        return identity_id

    # --- tokens ------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """The public signing key as a JWKS."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._public_key))
        jwk.update({"kid": self.kid, "alg": "RS256", "use": "sig"})
        return {"keys": [jwk]}

    def issue_token(self, identity_id: str, duration_s: int) -> str:
        """An RS256 OpenID token for ``identity_id``, valid ``duration_s``."""
        identity = self._identities[identity_id]
        now = int(self.clock())
        amr = ["authenticated"]
        for provider, user in identity.logins.items():
            amr += [provider, f"{provider}:{identity.pool_id}:{user}"]
        claims = {
            "iss": self.config.issuer,
            "aud": identity.pool_id,
            "sub": identity_id,
            "amr": amr,
            "iat": now,
            "exp": now + duration_s,
            "https://cognito-identity.amazonaws.com/identity-pool-arn": self.pool_arn(
                identity.pool_id
            ),
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})

    def verify_token(self, token: Any) -> dict[str, Any]:
        """The claims of one of our tokens, or ``NotAuthorizedException``."""
        if not isinstance(token, str):
            raise IdentityError("NotAuthorizedException", "Invalid login token.")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise IdentityError("NotAuthorizedException", "Invalid login token. Unknown kid.")
            claims: dict[str, Any] = jwt.decode(
                token,
                self._public_key,
                algorithms=["RS256"],
                issuer=self.config.issuer,
                options={"verify_aud": False, "require": ["exp", "sub", "aud"]},
                leeway=0,
            )
        except jwt.ExpiredSignatureError:
            raise IdentityError(
                "NotAuthorizedException", "Invalid login token. Token expired."
            ) from None
        except jwt.InvalidTokenError as exc:
            raise IdentityError("NotAuthorizedException", f"Invalid login token. {exc}") from None
        if claims.get("sub") not in self._identities or claims.get("aud") not in self._pools:
            raise IdentityError("NotAuthorizedException", "Invalid login token.")
        return claims

    # --- operations --------------------------------------------------------------------

    def authorize_developer(self, caller: StoredCredential, action: str, pool_id: str) -> None:
        """``AccessDeniedException`` unless ``caller``'s policies allow ``action`` on the pool."""
        if not is_allowed(
            caller.policy_sets,
            f"cognito-identity:{action}",
            self.pool_arn(pool_id),
            caller.variables,
        ):
            raise IdentityError(
                "AccessDeniedException",
                f"User: {caller.principal} is not authorized to perform: "
                f"cognito-identity:{action} on resource: {self.pool_arn(pool_id)}",
            )

    def get_id(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``GetId``: the identity of an OpenID token login, or a new unauthenticated one."""
        pool = self.pool(request.get("IdentityPoolId"))
        logins = request.get("Logins") or {}
        if not isinstance(logins, dict):
            raise IdentityError("InvalidParameterException", "Logins must be a map.")
        if COGNITO_LOGIN in logins:
            claims = self.verify_token(logins[COGNITO_LOGIN])
            if claims["aud"] != pool.pool_id:
                raise IdentityError("NotAuthorizedException", "Invalid login token.")
            return {"IdentityId": claims["sub"]}
        if logins:
            raise IdentityError(
                "NotAuthorizedException",
                f"Unsupported login provider(s): {', '.join(sorted(logins))}.",
            )
        if not pool.allow_unauthenticated:
            raise IdentityError(
                "NotAuthorizedException",
                "Unauthenticated access is not supported for this identity pool.",
            )
        with self._lock:
            identity = self._new_identity(pool.pool_id)
            self._save_identities()
        if self.on_new_identity is not None:
            self.on_new_identity(pool.pool_id, identity.identity_id)
        return {"IdentityId": identity.identity_id}

    def get_open_id_token_for_developer_identity(
        self, request: Mapping[str, Any], caller: StoredCredential
    ) -> dict[str, Any]:
        """``GetOpenIdTokenForDeveloperIdentity`` (developer credentials)."""
        pool = self.pool(request.get("IdentityPoolId"))
        self.authorize_developer(caller, "GetOpenIdTokenForDeveloperIdentity", pool.pool_id)
        logins = request.get("Logins")
        if not isinstance(logins, dict) or not logins:
            raise IdentityError(
                "InvalidParameterException",
                "Logins must name the developer provider and the user identifier.",
            )
        user_id = logins.get(pool.developer_provider)
        if set(logins) != {pool.developer_provider} or not isinstance(user_id, str):
            raise IdentityError(
                "NotAuthorizedException",
                "Logins must have exactly the pool's "
                f"developer provider {pool.developer_provider!r}.",
            )
        if not 1 <= len(user_id) <= 1024:
            raise IdentityError(
                "InvalidParameterException",
                "The developer user identifier must be 1-1024 characters.",
            )
        duration = request.get("TokenDuration", 900)
        if (
            not isinstance(duration, int)
            or isinstance(duration, bool)
            or not (1 <= duration <= 86400)
        ):
            raise IdentityError(
                "InvalidParameterException", "TokenDuration must be 1-86400 seconds."
            )
        identity_id = self.identity_for_login(pool.pool_id, pool.developer_provider, user_id)
        wanted = request.get("IdentityId")
        if wanted is not None and wanted != identity_id:
            raise IdentityError(
                "ResourceConflictException",
                "The developer user identifier is linked to another identity.",
            )
        return {"IdentityId": identity_id, "Token": self.issue_token(identity_id, duration)}

    def lookup_developer_identity(
        self, request: Mapping[str, Any], caller: StoredCredential
    ) -> dict[str, Any]:
        """``LookupDeveloperIdentity`` by identity id or developer user identifier."""
        pool = self.pool(request.get("IdentityPoolId"))
        self.authorize_developer(caller, "LookupDeveloperIdentity", pool.pool_id)
        identity_id = request.get("IdentityId")
        user_id = request.get("DeveloperUserIdentifier")
        with self._lock:
            if identity_id is None and isinstance(user_id, str):
                identity_id = self._by_login.get((pool.pool_id, pool.developer_provider, user_id))
            identity = self._identities.get(identity_id) if isinstance(identity_id, str) else None
        if (
            identity is None
            or identity.pool_id != pool.pool_id
            or (user_id is not None and identity.logins.get(pool.developer_provider) != user_id)
        ):
            raise IdentityError("ResourceNotFoundException", "No identity matches the request.")
        users = (
            [identity.logins[pool.developer_provider]]
            if (pool.developer_provider in identity.logins)
            else []
        )
        return {"IdentityId": identity.identity_id, "DeveloperUserIdentifierList": users}

    def _mint(
        self,
        identity_id: str,
        pool_id: str,
        role_arn: str,
        session_policy: PolicyDocument | None,
        lifetime_s: float,
    ) -> StoredCredential:
        role_documents = self.config.roles.get(role_arn)
        if role_documents is None:
            raise IdentityError(
                "InvalidIdentityPoolConfigurationException",
                f"The role {role_arn} is not configured.",
            )
        policy_sets: list[Sequence[PolicyDocument]] = [list(role_documents)]
        if session_policy is not None:
            policy_sets.append([session_policy])
        policy_sets.append(list(self.iot_policies(identity_id)))
        credential = mint_temporary_credential(
            identity_id,
            policy_sets,
            lifetime_s=lifetime_s,
            variables={
                SUB_KEY: identity_id,
                "cognito-identity.amazonaws.com:aud": pool_id,
                "cognito-identity.amazonaws.com:amr": "authenticated",
            },
            now=self.clock(),
        )
        self.credentials.put(credential)
        return credential

    def get_credentials_for_identity(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """``GetCredentialsForIdentity`` with the OpenID token in ``Logins``."""
        identity_id = request.get("IdentityId")
        if not isinstance(identity_id, str) or not identity_id:
            raise IdentityError("InvalidParameterException", "IdentityId is required.")
        logins = request.get("Logins") or {}
        if not isinstance(logins, dict) or COGNITO_LOGIN not in logins:
            raise IdentityError(
                "NotAuthorizedException",
                "Logins must carry the identity's "
                f"OpenID token under {COGNITO_LOGIN!r} (unauthenticated "
                "identities are not emulated).",
            )
        claims = self.verify_token(logins[COGNITO_LOGIN])
        if claims["sub"] != identity_id:
            raise IdentityError(
                "NotAuthorizedException", "Invalid login token. The token is not for this identity."
            )
        pool = self.pool(claims["aud"])
        credential = self._mint(
            identity_id,
            pool.pool_id,
            pool.authenticated_role_arn,
            None,
            self.config.credential_lifetime_s,
        )
        return {
            "IdentityId": identity_id,
            "Credentials": {
                "AccessKeyId": credential.access_key_id,
                "SecretKey": credential.secret_access_key,
                "SessionToken": credential.session_token,
                "Expiration": credential.expiration,
            },
        }

    def assume_role_with_web_identity(self, params: Mapping[str, str]) -> dict[str, Any]:
        """STS ``AssumeRoleWithWebIdentity`` with a Cognito OpenID token (basic flow)."""
        role_arn = params.get("RoleArn", "")
        session_name = params.get("RoleSessionName", "")
        if not role_arn or not session_name:
            raise IdentityError("ValidationError", "RoleArn and RoleSessionName are required.")
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            raise IdentityError("ValidationError", "DurationSeconds must be a number.") from None
        if not 900 <= duration <= 43200:
            raise IdentityError("ValidationError", "DurationSeconds must be 900-43200.")
        try:
            claims = self.verify_token(params.get("WebIdentityToken"))
        except IdentityError as exc:
            raise IdentityError("InvalidIdentityToken", exc.message) from None
        pool = self.pool(claims["aud"])
        if role_arn != pool.authenticated_role_arn:
            raise IdentityError(
                "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403
            )
        session_policy: PolicyDocument | None = None
        if params.get("Policy"):
            if len(params["Policy"]) > 2048:
                raise IdentityError("PackedPolicyTooLarge", "The session policy is too large.")
            try:
                session_policy = json.loads(params["Policy"])
                validate_policy(session_policy)
            except (ValueError, RecursionError, PolicyError) as exc:
                raise IdentityError(
                    "MalformedPolicyDocument", str(exc) or "The session policy nests too deeply."
                ) from None
        lifetime = min(float(duration), self.config.credential_lifetime_s)
        credential = self._mint(claims["sub"], pool.pool_id, role_arn, session_policy, lifetime)
        role_name = role_arn.rsplit("/", 1)[-1]
        role_id = "AROA" + secrets.token_hex(8).upper()
        return {
            "credential": credential,
            "subject": claims["sub"],
            "audience": pool.pool_id,
            "assumed_role_arn": (
                f"arn:aws:sts::{self.config.account_id}:assumed-role/{role_name}/{session_name}"
            ),
            "assumed_role_id": f"{role_id}:{session_name}",
        }


# --- the HTTP front ---------------------------------------------------------------------


def _iso(epoch: float | None) -> str:
    moment = datetime.fromtimestamp(epoch or 0, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sts_xml(result: Mapping[str, Any], request_id: str) -> str:
    credential: StoredCredential = result["credential"]
    return (
        f'<AssumeRoleWithWebIdentityResponse xmlns="{STS_NAMESPACE}">'
        "<AssumeRoleWithWebIdentityResult>"
        f"<SubjectFromWebIdentityToken>{escape(result['subject'])}</SubjectFromWebIdentityToken>"
        f"<Audience>{escape(result['audience'])}</Audience>"
        "<AssumedRoleUser>"
        f"<Arn>{escape(result['assumed_role_arn'])}</Arn>"
        f"<AssumedRoleId>{escape(result['assumed_role_id'])}</AssumedRoleId>"
        "</AssumedRoleUser>"
        "<Credentials>"
        f"<SessionToken>{escape(credential.session_token or '')}</SessionToken>"
        f"<SecretAccessKey>{escape(credential.secret_access_key)}</SecretAccessKey>"
        f"<Expiration>{_iso(credential.expiration)}</Expiration>"
        f"<AccessKeyId>{escape(credential.access_key_id)}</AccessKeyId>"
        "</Credentials>"
        f"<Provider>{COGNITO_LOGIN}</Provider>"
        "</AssumeRoleWithWebIdentityResult>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        "</AssumeRoleWithWebIdentityResponse>"
    )


def _sts_error_xml(error: IdentityError, request_id: str) -> str:
    return (
        f'<ErrorResponse xmlns="{STS_NAMESPACE}"><Error><Type>Sender</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )


_SIGNATURE_CODES = {
    "unknown_key": "UnrecognizedClientException",
    "invalid_token": "UnrecognizedClientException",
    "expired_credentials": "ExpiredTokenException",
    "signature_mismatch": "InvalidSignatureException",
    "request_expired": "InvalidSignatureException",
    "malformed": "IncompleteSignatureException",
    "wrong_region": "InvalidSignatureException",
    "wrong_service": "InvalidSignatureException",
}
_DEVELOPER_OPERATIONS = {"GetOpenIdTokenForDeveloperIdentity", "LookupDeveloperIdentity"}


_BODY_ERROR_TYPES = {
    400: "SerializationException",
    411: "LengthRequiredException",
    413: "InvalidParameterException",
}
"""A malformed body or Content-Length, by status, as Cognito names it."""


class _BadRequest(Exception):
    """A request refused before it reaches an operation: status, ``__type``, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "x-amzn-RequestId, x-amzn-ErrorType, x-amzn-ErrorMessage, Date"
    ),
}
"""On every answer: any page may read it (the AWS SDK reads the request id and error type)."""
CORS_PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST",
    "Access-Control-Allow-Headers": (
        "Content-Type, X-Amz-Target, X-Amz-User-Agent, Authorization, X-Amz-Date, "
        "X-Amz-Security-Token, X-Amz-Content-Sha256, Amz-Sdk-Invocation-Id, Amz-Sdk-Request"
    ),
    "Access-Control-Max-Age": "86400",
}
"""The answer to a CORS preflight (``OPTIONS``), from any origin."""


class _Handler(RefusingRequestHandler):
    server: _Server
    allowed_methods = "POST (API calls) or GET (keys)"

    def setup(self) -> None:
        self.request_timeout_s = self.server.service.config.request_timeout_s
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**CORS_HEADERS, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/x-amz-json-1.1", headers)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``{"__type", "message"}`` and close: the rest of the stream is not trusted."""
        self.close_connection = True
        self._json(
            status,
            {"__type": code, "message": message},
            {"x-amzn-ErrorType": code, "Connection": "close"},
        )

    def refuse(self, status: int, message: str) -> None:
        """HTTP-level refusals in Cognito's JSON error shape."""
        if status >= 500:
            self._refuse(500, "InternalErrorException", "The local identity service failed.")
        else:
            self._refuse(status, HTTP_REFUSAL_TYPES.get(status, "BadRequestException"), message)

    def do_GET(self) -> None:
        service = self.server.service
        path = urlsplit(self.path).path
        try:
            self._read_body()  # ignored, but read: the next request on the connection follows it
        except _BadRequest as exc:
            self._refuse(exc.status, exc.code, exc.message)
            return
        if path == "/.well-known/jwks_uri":
            self._send(200, json.dumps(service.jwks()).encode(), "application/json")
        elif path == "/.well-known/openid-configuration":
            host, port = self.server.server_address[:2]
            base = f"http://{host!s}:{port}"
            self._send(
                200,
                json.dumps(
                    {
                        "issuer": service.config.issuer,
                        "jwks_uri": f"{base}/.well-known/jwks_uri",
                        "id_token_signing_alg_values_supported": ["RS256"],
                        "subject_types_supported": ["public"],
                    }
                ).encode(),
                "application/json",
            )
        elif path == "/health":
            self._send(200, b'{"status":"ok"}', "application/json")
        else:
            self._send(404, b'{"error":"not_found","message":"No such path."}', "application/json")

    def _read_body(self) -> bytes:
        try:
            return self.read_body(MAX_BODY_BYTES)
        except HttpRefusal as exc:
            code = _BODY_ERROR_TYPES.get(exc.status, "SerializationException")
            raise _BadRequest(exc.status, code, exc.message) from None

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except _BadRequest as exc:
            self._refuse(exc.status, exc.code, exc.message)
            return
        target = self.headers.get("X-Amz-Target", "")
        if target.startswith(TARGET_PREFIX):
            self._cognito(target[len(TARGET_PREFIX) :], body, request_id)
        else:
            self._sts(body, request_id)

    def _method_not_allowed(self) -> None:
        self._refuse(
            405,
            "MethodNotAllowedException",
            f"{self.command} is not supported: send POST (API calls) or GET (keys).",
        )

    do_PUT = do_DELETE = do_PATCH = do_HEAD = _method_not_allowed

    def do_OPTIONS(self) -> None:
        """A CORS preflight: any origin may send POST (API calls) and GET (keys)."""
        try:
            self._read_body()
        except _BadRequest as exc:
            self._refuse(exc.status, exc.code, exc.message)
            return
        self._send(200, b"", "text/plain", CORS_PREFLIGHT_HEADERS)

    def _cognito(self, operation: str, body: bytes, request_id: str) -> None:
        service = self.server.service
        headers = {"x-amzn-RequestId": request_id}
        try:
            try:
                request = json.loads(body or b"{}")
            except (ValueError, RecursionError):
                raise IdentityError(
                    "SerializationException",
                    "The body is not a JSON document (or nests too deeply).",
                ) from None
            if not isinstance(request, dict):
                raise IdentityError("SerializationException", "The body must be an object.")
            if operation in _DEVELOPER_OPERATIONS:
                caller = self._verify(body)
                if operation == "GetOpenIdTokenForDeveloperIdentity":
                    result = service.get_open_id_token_for_developer_identity(request, caller)
                else:
                    result = service.lookup_developer_identity(request, caller)
            elif operation == "GetId":
                result = service.get_id(request)
            elif operation == "GetCredentialsForIdentity":
                result = service.get_credentials_for_identity(request)
            else:
                raise IdentityError(
                    "UnknownOperationException", f"{operation} is not emulated locally."
                )
        except IdentityError as exc:
            self._json(
                exc.status,
                {"__type": exc.code, "message": exc.message},
                {**headers, "x-amzn-ErrorType": exc.code},
            )
            return
        self._json(200, result, headers)

    def _verify(self, body: bytes) -> StoredCredential:
        service = self.server.service
        split = urlsplit(self.path)
        try:
            verified = verify_authorization_header(
                "POST",
                split.path or "/",
                split.query,
                list(self.headers.items()),
                body,
                lookup=service.credentials.get,
                region=service.config.region,
                services=("cognito-identity",),
                now=service.clock(),
                max_skew_s=service.config.max_signature_skew_s,
            )
        except SignatureError as exc:
            raise IdentityError(
                _SIGNATURE_CODES.get(exc.code, "NotAuthorizedException"), exc.message
            ) from None
        return verified.credential

    def _sts(self, body: bytes, request_id: str) -> None:
        service = self.server.service
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        try:
            if action != "AssumeRoleWithWebIdentity":
                raise IdentityError(
                    "InvalidAction", f"{action or 'No action'} is not emulated locally."
                )
            result = service.assume_role_with_web_identity(params)
        except IdentityError as exc:
            self._send(exc.status, _sts_error_xml(exc, request_id).encode(), "text/xml")
            return
        self._send(200, _sts_xml(result, request_id).encode(), "text/xml")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: IdentityService) -> None:
        super().__init__(address, _Handler)
        self.service = service


class IdentityServiceThread(ServerThread):
    """``with IdentityServiceThread(config, store) as svc: ... svc.endpoint ...``"""

    name = "identity service"

    def __init__(
        self,
        config: IdentityServiceConfig,
        credentials: CredentialStore | None = None,
        *,
        iot_policies: IotPolicySource = _no_iot_policies,
        on_new_identity: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.credentials = credentials if credentials is not None else CredentialStore()
        self.service = IdentityService(
            config,
            self.credentials,
            iot_policies=iot_policies,
            on_new_identity=on_new_identity,
            clock=clock,
        )

    def _bind(self) -> _Server:
        """Listen on ``config.host:config.port`` (0 = a free port)."""
        config = self.service.config
        return _Server((config.host, config.port), self.service)

    def start(self) -> Self:
        """Serve in a background thread; returns this service."""
        super().start()
        log.info("identity service on %s", self.endpoint)
        return self

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>``: the endpoint URL for cognito-identity and sts."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        """Where the token signing keys are served."""
        return f"{self.endpoint}/.well-known/jwks_uri"


# --- wiring to the IoT control plane ------------------------------------------------------


def iot_control_plane_policies(iot_client: Any) -> IotPolicySource:
    """An :data:`IotPolicySource` asking the IoT control plane (moto or AWS) through boto3."""

    def attached(identity_id: str) -> list[PolicyDocument]:
        documents: list[PolicyDocument] = []
        kwargs: dict[str, Any] = {"target": identity_id}
        while True:
            page = iot_client.list_attached_policies(**kwargs)
            for policy in page.get("policies", []):
                answer = iot_client.get_policy(policyName=policy["policyName"])
                documents.append(json.loads(answer["policyDocument"]))
            marker = page.get("nextMarker")
            if not marker:
                return documents
            kwargs["marker"] = marker

    return attached
