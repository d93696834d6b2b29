"""`tidings up`: the stack built from the template answers on every endpoint, and template
settings (batch size, retries, the publisher's IAM policy) change what happens locally."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import boto3
import pytest
import requests

from client_sdk import AccessDenied, ClientOptions, Tidings
from infra.local.stack.local_stack import LocalStack
from tests.support.local_stack import add_user, stack_config


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(stack_config()) as running:
        add_user(running, "ann", "ann-password-1", {"acme"})
        add_user(running, "ben", "ben-password-1", {"globex"})
        yield running


def options(stack: LocalStack) -> ClientOptions:
    return ClientOptions(ca_file=stack.ca_file, cognito_endpoint=stack.identity_url)


def test_every_endpoint_answers(stack: LocalStack) -> None:
    ca = stack.ca_file
    health = requests.get(f"https://localhost:{stack.iot_port}/health", verify=ca, timeout=10)
    assert health.json() == {"status": "ok"}
    unknown = requests.get(f"{stack.api_url}/v1/nothing", verify=ca, timeout=10)
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "message"}
    bad_login = requests.post(f"{stack.api_url}/v1/login", data=b"{not json", verify=ca, timeout=30)
    assert bad_login.status_code == 400 and bad_login.json()["error"]
    unsigned = requests.get(f"{stack.api_url}/v1/channels/public/scores", verify=ca, timeout=10)
    assert unsigned.status_code == 403
    identity = boto3.client(
        "cognito-identity", endpoint_url=stack.identity_url, region_name="us-east-1"
    )
    with pytest.raises(identity.exceptions.ClientError):
        identity.get_credentials_for_identity(
            IdentityId="us-east-1:nope", Logins={"cognito-identity.amazonaws.com": "x"}
        )
    tables = stack.client("dynamodb").list_tables()["TableNames"]
    assert set(stack.tables.values()) <= set(tables)
    env_text = stack.config.env_file.read_text()
    for name in (
        "AWS_ENDPOINT_URL_DYNAMODB_STREAMS",
        "AWS_ENDPOINT_URL_IOT_DATA_PLANE",
        "AWS_ENDPOINT_URL_COGNITO_IDENTITY",
        "AWS_ENDPOINT_URL_STS",
        "TIDINGS_API_URL",
        "TIDINGS_IOT_PORT",
        "TIDINGS_CA_FILE",
        "TIDINGS_TABLE_TODOSTABLE",
    ):
        assert f"export {name}=" in env_text


def test_a_write_reaches_its_owner_and_not_others(stack: LocalStack) -> None:
    received: list[dict] = []
    arrived = threading.Event()
    with (
        Tidings.connect(
            stack.api_url,
            "password",
            username="ann",
            password="ann-password-1",
            options=options(stack),
        ) as ann,
        Tidings.connect(
            stack.api_url,
            "password",
            username="ben",
            password="ben-password-1",
            options=options(stack),
        ) as ben,
    ):
        assert ann.mode == "push"
        ann.subscribe("users/me/todos", lambda c: (received.append(dict(c)), arrived.set()))
        with pytest.raises(AccessDenied):
            ben.subscribe(f"users/{ann.identity_id}/todos", lambda c: None)
        stack.client("dynamodb").put_item(
            TableName=stack.tables["TodosTable"],
            Item={"owner": {"S": ann.identity_id}, "id": {"S": "x1"}, "n": {"N": "0.1"}},
        )
        assert arrived.wait(30)
        assert received[0]["seq"] == 1 and received[0]["new"]["n"] == 0.1
        assert received[0]["op"] == "insert"
