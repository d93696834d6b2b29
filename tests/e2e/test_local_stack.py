"""`tidings up`: the stack built from the template answers on every local endpoint and writes
them to its environment file. What a deployed stack must do as well (sign-in, delivery,
refusals) is in the acceptance suite (tests/acceptance/)."""

from __future__ import annotations

import boto3
import pytest
import requests

from infra.local.stack.local_stack import LocalStack
from tests.support.openapi import checked


@pytest.fixture(scope="module")
def stack(shared_stack: LocalStack) -> LocalStack:
    return shared_stack


def test_every_endpoint_answers(stack: LocalStack) -> None:
    ca = stack.ca_file
    health = requests.get(f"https://localhost:{stack.iot_port}/health", verify=ca, timeout=10)
    assert health.json() == {"status": "ok"}
    unknown = checked(requests.get(f"{stack.api_url}/v1/nothing", verify=ca, timeout=10))
    assert unknown.status_code == 404 and set(unknown.json()) == {"error", "message"}
    bad_login = checked(
        requests.post(f"{stack.api_url}/v1/login", data=b"{not json", verify=ca, timeout=30)
    )
    assert bad_login.status_code == 400 and bad_login.json()["error"]
    unsigned = checked(
        requests.get(f"{stack.api_url}/v1/channels/public/scores", verify=ca, timeout=10)
    )
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


def test_outputs_are_the_templates_resolved_against_the_local_stack(stack: LocalStack) -> None:
    assert set(stack.outputs) == set(stack.template.body["Outputs"])
    assert stack.outputs["ApiUrl"] == stack.api_url
    assert stack.outputs["IotDataEndpoint"] == "localhost"
    for logical, name in stack.tables.items():
        assert stack.outputs.get(f"{logical}Name", name) == name
    assert stack.outputs["ChangeLogTableName"] == stack.tables["ChangeLogTable"]
    assert stack.outputs["IdentityPoolId"].startswith(f"{stack.config.region}:")
