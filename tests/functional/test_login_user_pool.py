"""Section D: a user-pool user signs in with SRP (pycognito) and logs in with the ID token.

moto's cognito-idp serves the user pool, its SRP flow and its JWKS; the ID token goes to
``POST /v1/login`` as ``id_token`` and comes back as a Cognito identity with credentials.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.request

import pytest
from pycognito import Cognito

from auth.http import handle_login_event
from auth.login import LoginService
from auth.settings import OidcIssuer
from tests.support.moto_server import REGION, login_event, moto_client, signin_stack


@pytest.fixture(scope="module")
def stack():
    with signin_stack() as running:
        yield running


@pytest.fixture(scope="module")
def user_pool(stack):
    idp = moto_client("cognito-idp", stack.moto)
    pool_id = idp.create_user_pool(PoolName="tidings-users")["UserPool"]["Id"]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="web",
        ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    idp.create_group(GroupName="acme", UserPoolId=pool_id)
    for username, groups in (("pat", ["acme"]), ("sam", [])):
        idp.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
        idp.admin_set_user_password(
            UserPoolId=pool_id, Username=username, Password="Srp-Passw0rd!", Permanent=True
        )
        for group in groups:
            idp.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return pool_id, client_id


def srp_id_token(stack, pool_id: str, client_id: str, username: str) -> str:
    user = Cognito(
        pool_id,
        client_id,
        user_pool_region=REGION,
        username=username,
        boto3_client_kwargs={
            "endpoint_url": stack.moto,
            "aws_access_key_id": "moto",
            "aws_secret_access_key": "moto",
        },
    )
    # pycognito checks the tokens itself; with a custom endpoint it would expect the issuer to
    # be that endpoint, but moto issues AWS's issuer: give it AWS's URL and moto's keys.
    user.pool_domain_url = None
    with urllib.request.urlopen(f"{stack.moto}/{pool_id}/.well-known/jwks.json") as response:
        user.pool_jwk = json.loads(response.read())
    user.authenticate(password="Srp-Passw0rd!")
    return str(user.id_token)


def service_trusting(stack, pool_id: str, client_id: str) -> LoginService:
    issuer = OidcIssuer(
        issuer=f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}",
        audiences=(client_id,),
        jwks_uri=f"{stack.moto}/{pool_id}/.well-known/jwks.json",
    )
    settings = dataclasses.replace(stack.service.settings, oidc_issuers=(issuer,))
    return LoginService(
        settings,
        dynamodb=stack.users.client,
        cognito=stack.service.cognito,
        iot=stack.iot,
        routes=stack.service.routes,
    )


def test_srp_sign_in_then_id_token_login_yields_credentials(stack, user_pool):
    pool_id, client_id = user_pool
    service = service_trusting(stack, pool_id, client_id)
    token = srp_id_token(stack, pool_id, client_id, "pat")
    result = handle_login_event(login_event({"method": "id_token", "id_token": token}), service)
    assert result["statusCode"] == 200, result["body"]
    answer = json.loads(result["body"])
    assert "tenants/acme/board" in answer["channels"]  # from the cognito:groups claim
    credentials = stack.credentials_for(answer)
    assert stack.credentials.get(credentials["AccessKeyId"]) is not None
    again = srp_id_token(stack, pool_id, client_id, "pat")
    second = handle_login_event(login_event({"method": "id_token", "id_token": again}), service)
    assert json.loads(second["body"])["identityId"] == answer["identityId"]


def test_a_user_pool_token_from_an_untrusted_pool_or_client_is_refused(stack, user_pool):
    pool_id, client_id = user_pool
    token = srp_id_token(stack, pool_id, client_id, "sam")
    idp = moto_client("cognito-idp", stack.moto)
    other_client = idp.create_user_pool_client(UserPoolId=pool_id, ClientName="other")[
        "UserPoolClient"
    ]["ClientId"]
    for service in (
        service_trusting(stack, pool_id, other_client),
        service_trusting(stack, "us-east-1_Other", client_id),
    ):
        result = handle_login_event(
            login_event({"method": "id_token", "id_token": token}, source_ip="192.0.2.99"), service
        )
        assert result["statusCode"] == 401
