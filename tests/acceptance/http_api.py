"""The stack's HTTP API as any client reaches it, without the Tidings client: ``POST
/v1/login``, ``GetCredentialsForIdentity`` with its OpenID token, and SigV4-signed
(``execute-api``) channel reads with the identity's temporary credentials."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.acceptance.target import Target


def login(target: Target, username: str, password: str) -> requests.Response:
    """``POST /v1/login`` with a password."""
    return requests.post(
        f"{target.api_url}/v1/login",
        json={"method": "password", "username": username, "password": password},
        verify=target.verify,
        timeout=30,
    )


def identity_credentials(target: Target, answer: dict[str, Any]) -> Credentials:
    """The temporary credentials a login answer's OpenID token leads to (an unsigned call)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    cognito = boto3.session.Session().client(
        "cognito-identity",
        endpoint_url=target.cognito_endpoint,
        region_name=answer["region"],
        config=Config(signature_version=UNSIGNED),
    )
    creds = cognito.get_credentials_for_identity(
        IdentityId=answer["identityId"],
        Logins={"cognito-identity.amazonaws.com": answer["token"]},
    )["Credentials"]
    return Credentials(creds["AccessKeyId"], creds["SecretKey"], creds["SessionToken"])


def channel_path(channel: str) -> str:
    """``/v1/channels/<channel>`` with each segment percent-encoded (``:`` too)."""
    return "/v1/channels/" + "/".join(quote(part, safe="") for part in channel.split("/"))


def signed_get(target: Target, path: str, credentials: Credentials | None) -> requests.Response:
    """``GET <ApiUrl><path>``, SigV4-signed for ``execute-api`` (unsigned when None)."""
    url = f"{target.api_url}{path}"
    headers: dict[str, str] = {}
    if credentials is not None:
        request = AWSRequest(method="GET", url=url)
        SigV4Auth(credentials, "execute-api", target.region).add_auth(request)
        headers = dict(request.headers)
    return requests.get(url, headers=headers, verify=target.verify, timeout=30)
