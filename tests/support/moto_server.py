"""moto in server mode on a free 127.0.0.1 port, and the sign-in stack built on it for tests.

``moto_server()`` yields the endpoint URL of a ThreadedMotoServer (reset first: moto keeps its
state per process) and stops it afterwards.
:class:`SigninStack` wires what ``tidings up`` wires for sign-in: the users table (moto
DynamoDB), the IoT control plane (moto), the local identity service (Cognito Identity + STS)
sharing a :class:`CredentialStore` with the gateway, and a :class:`LoginService` whose
Cognito calls are SigV4-signed with a developer credential that the identity service checks.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from auth.http import handle_login_event
from auth.login import LoginService
from auth.passwords import hash_password
from auth.policies import PolicyScope, role_policy
from auth.settings import AuthSettings, OidcIssuer, RateLimits
from auth.store import UsersStore
from auth.tokens import JwksCache
from backend.routes import load_routes
from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential
from infra.local.identity.service import (
    IdentityPool,
    IdentityServiceConfig,
    IdentityServiceThread,
    iot_control_plane_policies,
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
POOL_ID = f"{REGION}:00000000-0000-4000-8000-00000000f00d"
PROVIDER = "login.tidings.test"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/tidings-test-authenticated"
TABLE = "tidings-test-signin"
ROUTES_FILE = Path(__file__).resolve().parents[2] / "infra" / "routes.yaml"
EVENTS = Path(__file__).resolve().parents[1] / "events"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[str]:
    """A ThreadedMotoServer on a free 127.0.0.1 port, with the local stack's moto fixes (as
    ``infra/local/motohost/process.py`` applies them); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    from infra.local.motohost.fixes import apply_local_stack_fixes

    apply_local_stack_fixes()

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are process-wide: start every server from an empty state
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    try:
        yield endpoint
    finally:
        server.stop()


def moto_client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        config=Config(retries={"max_attempts": 1}),
    )


def developer_credential(store: CredentialStore) -> StoredCredential:
    """The login Lambda's credential: may call the developer APIs on the test pool only."""
    pool_arn = f"arn:aws:cognito-identity:{REGION}:{ACCOUNT}:identitypool/{POOL_ID}"
    credential = mint_temporary_credential(
        "login-lambda-role/session",
        [
            [
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Action": [
                                "cognito-identity:GetOpenIdTokenForDeveloperIdentity",
                                "cognito-identity:LookupDeveloperIdentity",
                            ],
                            "Resource": pool_arn,
                        }
                    ],
                }
            ]
        ],
    )
    store.put(credential)
    return credential


def login_event(body: Any, source_ip: str = "198.51.100.7") -> dict[str, Any]:
    """The API Gateway proxy event of ``tests/events/login_password.json`` with ``body``."""
    event: dict[str, Any] = json.loads((EVENTS / "login_password.json").read_text())
    event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    return event


@dataclass
class SigninStack:
    """Everything sign-in needs, running; build with :func:`signin_stack`."""

    moto: str
    identity: IdentityServiceThread
    credentials: CredentialStore
    service: LoginService
    users: UsersStore
    iot: Any
    issuers: tuple[OidcIssuer, ...] = field(default_factory=tuple)

    def add_user(self, username: str, password: str, tenants: tuple[str, ...] = ()) -> None:
        self.users.add_user(username, hash_password(password), frozenset(tenants))

    def post(
        self, body: Any, source_ip: str = "198.51.100.7"
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        result = handle_login_event(login_event(body, source_ip), self.service)
        return result["statusCode"], json.loads(result["body"]), result["headers"]

    def login(self, body: Any, source_ip: str = "198.51.100.7") -> dict[str, Any]:
        status, answer, _ = self.post(body, source_ip)
        assert status == 200, answer
        return answer

    def cognito(self) -> Any:
        """An unsigned-capable cognito-identity client pointed at the identity service."""
        return boto3.client(
            "cognito-identity",
            endpoint_url=self.identity.endpoint,
            region_name=REGION,
            aws_access_key_id="unused",
            aws_secret_access_key="unused",
        )

    def credentials_for(self, answer: dict[str, Any]) -> dict[str, Any]:
        """GetCredentialsForIdentity with the login's OpenID token (boto3, real protocol)."""
        result = self.cognito().get_credentials_for_identity(
            IdentityId=answer["identityId"],
            Logins={"cognito-identity.amazonaws.com": answer["token"]},
        )
        return dict(result["Credentials"])


def settings_for(
    routes_file: Path = ROUTES_FILE,
    issuers: tuple[OidcIssuer, ...] = (),
    limits: RateLimits | None = None,
) -> AuthSettings:
    return AuthSettings(
        users_table=TABLE,
        identity_pool_id=POOL_ID,
        region=REGION,
        account_id=ACCOUNT,
        iot_endpoint="localhost",
        iot_port=8443,
        stage="dev",
        developer_provider=PROVIDER,
        api_url="http://127.0.0.1:9/v1",
        routes_file=routes_file,
        oidc_issuers=issuers,
        rate_limits=limits or RateLimits(),
    )


@contextmanager
def signin_stack(
    credentials: CredentialStore | None = None,
    *,
    issuers: tuple[OidcIssuer, ...] = (),
    limits: RateLimits | None = None,
    credential_lifetime_s: float = 3600.0,
    jwks_fetch: Any = None,
) -> Iterator[SigninStack]:
    """moto + identity service + login service, sharing ``credentials`` with a gateway."""
    store = credentials if credentials is not None else CredentialStore()
    routes = load_routes(ROUTES_FILE)
    scope = PolicyScope(REGION, ACCOUNT, "dev")
    with moto_server() as moto:
        dynamodb = moto_client("dynamodb", moto)
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "identityId", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byIdentity",
                    "KeySchema": [{"AttributeName": "identityId", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["tenants"]},
                }
            ],
        )
        iot = moto_client("iot", moto)
        config = IdentityServiceConfig(
            pools=(IdentityPool(POOL_ID, PROVIDER, ROLE_ARN),),
            roles={ROLE_ARN: [role_policy(routes, scope)]},
            region=REGION,
            account_id=ACCOUNT,
            credential_lifetime_s=credential_lifetime_s,
        )
        identity = IdentityServiceThread(
            config,
            store,
            iot_policies=iot_control_plane_policies(iot),
        )
        identity.start()
        try:
            developer = developer_credential(store)
            cognito = boto3.client(
                "cognito-identity",
                endpoint_url=identity.endpoint,
                region_name=REGION,
                aws_access_key_id=developer.access_key_id,
                aws_secret_access_key=developer.secret_access_key,
                aws_session_token=developer.session_token,
                config=Config(retries={"max_attempts": 1}),
            )
            jwks = JwksCache(jwks_fetch) if jwks_fetch is not None else JwksCache()
            service = LoginService(
                settings_for(issuers=issuers, limits=limits),
                dynamodb=dynamodb,
                cognito=cognito,
                iot=iot,
                jwks=jwks,
                routes=routes,
            )
            yield SigninStack(
                moto, identity, store, service, UsersStore(dynamodb, TABLE), iot, issuers
            )
        finally:
            identity.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
