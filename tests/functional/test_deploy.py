"""`tidings deploy` against moto's CloudFormation (server mode), and the Lambda package."""

from __future__ import annotations

import json
import re
import urllib.request
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from infra.deploy import build_package, deploy, destroy, plan_deploy

REGION = "us-east-1"
# moto's CloudFormation silently skips these types (it has no implementation for them); the
# test names the gap instead of hiding it, and checks everything else was created.
MOTO_SKIPS = {
    "AWS::Cognito::IdentityPool",
    "AWS::Cognito::IdentityPoolRoleAttachment",
    "AWS::ApiGateway::Stage",
    "AWS::ApiGateway::GatewayResponse",
    "AWS::CloudWatch::Alarm",
}


@pytest.fixture()
def moto_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # moto's CloudFormation fails on a method with a MOCK integration (the CORS preflights),
    # drops a REST API's OpenAPI Body and cannot delete the IoT policy and role alias of the
    # devices; the local stack's fixes for those gaps are the ones applied here (the server
    # is in-process)
    from infra.local.motohost.fixes.cloudformation_iot import apply_cloudformation_iot_fix
    from infra.local.motohost.fixes.mock_integrations import apply_mock_integrations_fix
    from infra.local.motohost.fixes.rest_api_body import apply_rest_api_body_fix

    apply_mock_integrations_fix()
    apply_rest_api_body_fix()
    apply_cloudformation_iot_fix()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    url = f"http://127.0.0.1:{port}"
    # moto's backends are process-wide: each test starts from an empty account
    with urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset", method="POST")):
        pass
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("TIDINGS_DEPLOY_POLL_S", "0.2")
    yield url
    server.stop()


def physical_id(cfn: Any, stack: str, logical_id: str) -> str:
    """The physical id of one resource of a deployed stack."""
    resources = cfn.describe_stack_resources(StackName=stack)["StackResources"]
    (resource,) = [r for r in resources if r.get("LogicalResourceId") == logical_id]
    return str(resource["PhysicalResourceId"])


def deployed_output(cfn: Any, stack: str, output: str, scratch: Path) -> str:
    """An output of the template the stack was deployed with, resolved against the stack."""
    from infra.local.stack.template_model import Resolver, load_template

    deployed = cfn.get_template(StackName=stack)["TemplateBody"]  # JSON: boto3 parses it
    (scratch / "deployed.yaml").write_text(
        deployed if isinstance(deployed, str) else json.dumps(deployed)
    )
    template = load_template(scratch / "deployed.yaml").body
    (described,) = cfn.describe_stacks(StackName=stack)["Stacks"]
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    resolve = Resolver(
        parameters=parameters,
        physical_ids={"Api": physical_id(cfn, stack, "Api")},
        attributes={},
        pseudo={"AWS::Region": REGION, "AWS::URLSuffix": "amazonaws.com"},
    )
    return str(resolve(template["Outputs"][output]["Value"]))


def test_package_is_deterministic_and_contains_the_code() -> None:
    first = build_package()
    second = build_package()
    assert first.sha256 == second.sha256 and first.data == second.data
    names = zipfile.ZipFile(BytesIO(first.data)).namelist()
    assert names == sorted(names)
    for needed in (
        "backend/publisher_handler.py",
        "backend/channels_handler.py",
        "auth/handler.py",
        "infra/routes.yaml",
    ):
        assert needed in names
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_deploy_to_moto_creates_the_stack(moto_env: str, tmp_path: Path) -> None:
    lines: list[str] = []
    plan = plan_deploy(
        "tidings-test",
        REGION,
        "test",
        "123456789012",
        with_dependencies=False,
        iot_endpoint="example-ats.iot.us-east-1.amazonaws.com",
    )
    outputs = deploy(plan, out=lines.append)
    text = "\n".join(lines)
    assert "Uploaded s3://" in text and "CREATE_COMPLETE" in text
    # how to add a device to this stack: the AWS CLI commands, with its thing policy and
    # role alias, and where the device connects
    assert "aws iot attach-policy --policy-name tidings_test_thing" in text, text
    assert re.search(r"credentials from https://\S+/role-aliases/tidings-test-device/", text)
    # moto reports no stack Outputs after a change set (a second moto gap, named here: this
    # fails once moto reports them); the IoT data endpoint comes from iot:DescribeEndpoint
    assert set(outputs) == {"IotDataEndpoint"}
    assert outputs["IotDataEndpoint"].endswith(".amazonaws.com")
    cfn = boto3.client("cloudformation", region_name=REGION)
    # the ApiUrl that CloudFormation reports: the deployed template's output, resolved with
    # the deployed stack's parameters and the id of the API it created
    assert deployed_output(cfn, "tidings-test", "ApiUrl", tmp_path) == (
        f"https://{physical_id(cfn, 'tidings-test', 'Api')}.execute-api.{REGION}.amazonaws.com/test"
    )
    created = {
        r["LogicalResourceId"]: r["ResourceType"]
        for r in cfn.describe_stack_resources(StackName="tidings-test")["StackResources"]
        if "LogicalResourceId" in r
    }
    from infra.deploy import TEMPLATE
    from infra.local.stack.template_model import load_template

    wanted = {k: v["Type"] for k, v in load_template(TEMPLATE).resources.items()}
    missing = {k: t for k, t in wanted.items() if k not in created}
    assert set(missing.values()) <= MOTO_SKIPS, missing
    assert "TodosStreamMapping" in created and "PublisherFunction" in created
    # the REST API is infra/openapi.yaml: its paths and methods, imported from the Body
    apigateway = boto3.client("apigateway", region_name=REGION)
    resources = apigateway.get_resources(restApiId=physical_id(cfn, "tidings-test", "Api"))
    methods = {r["path"]: set(r.get("resourceMethods", {})) for r in resources["items"]}
    assert methods["/v1/login"] == {"POST", "OPTIONS"}
    assert methods["/v1/channels/{channel+}"] == {"GET", "OPTIONS"}
    functions = boto3.client("lambda", region_name=REGION).list_functions()["Functions"]
    handlers = sorted(f["Handler"] for f in functions)
    assert handlers == [
        "auth.handler.lambda_handler",
        "backend.channels_handler.lambda_handler",
        "backend.publisher_handler.lambda_handler",
    ]
    # a second deploy of the same code is an update, and the package key is unchanged
    again = plan_deploy(
        "tidings-test",
        REGION,
        "test",
        "123456789012",
        with_dependencies=False,
        iot_endpoint="example-ats.iot.us-east-1.amazonaws.com",
    )
    assert again.key == plan.key
    destroy("tidings-test", REGION, out=lines.append)
    assert "deleted" in lines[-1]


def test_dry_run_changes_nothing(moto_env: str) -> None:
    lines: list[str] = []
    plan = plan_deploy(
        "tidings-dry",
        REGION,
        "dev",
        "123456789012",
        with_dependencies=False,
        iot_endpoint="example-ats.iot.us-east-1.amazonaws.com",
    )
    assert deploy(plan, dry_run=True, out=lines.append) == {}
    assert any("Add" in line and "TodosTable" in line for line in lines)
    cfn = boto3.client("cloudformation", region_name=REGION)
    stacks = [
        s
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackName"] == "tidings-dry" and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert stacks == []  # the change set's stack (REVIEW_IN_PROGRESS) was deleted too
    assert [line for line in lines if line.startswith("Uploaded")] == []
    buckets = boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]
    assert [b["Name"] for b in buckets if b["Name"] == plan.bucket] == []
