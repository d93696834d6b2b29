"""``infra.local.motohost.fixes.rest_api_body``: a REST API whose definition is its OpenAPI
``Body`` (the template's, from infra/openapi.yaml) deploys through moto's CloudFormation with
its paths and methods; moto 5.2.5's own code drops the body, and the stage's deployment then
fails for want of a method."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.data_files import TEMPLATE, data_file
from infra.local.motohost.fixes.rest_api_body import apply_rest_api_body_fix
from infra.local.stack.template_model import load_template

REGION = "us-east-1"


def template() -> dict[str, Any]:
    """The template's API, its deployment and a stand-in for each function it calls."""
    loaded = load_template(data_file(TEMPLATE))
    role = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        },
    }
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Runtime": "python3.11",
            "Handler": "index.handler",
            "Role": {"Fn::GetAtt": ["Role", "Arn"]},
            "Code": {"ZipFile": "def handler(event, context): pass"},
        },
    }
    return {
        "Parameters": {
            "Stage": {"Type": "String", "Default": "dev"},
            "AllowedOrigins": {"Type": "String", "Default": "*"},
        },
        "Resources": {
            "Api": loaded.resources["Api"],
            "Deployment": {
                "Type": "AWS::ApiGateway::Deployment",
                "Properties": {"RestApiId": {"Ref": "Api"}},
            },
            "Role": role,
            "LoginFunction": function,
            "ChannelsFunction": function,
        },
    }


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with mock_aws():
        yield


def test_moto_alone_drops_the_body_and_the_fix_imports_it(aws: None) -> None:
    from moto.apigateway.models import RestAPI

    apply_rest_api_body_fix()
    original = RestAPI._tidings_original_create_from_cloudformation_json  # type: ignore[attr-defined]
    body = template()["Resources"]["Api"]["Properties"]["Body"]
    spec = {"Properties": {"Name": "plain", "Body": body}}
    plain = original(RestAPI, "Api", spec, "123456789012", REGION)
    assert plain.resources and all(not r.resource_methods for r in plain.resources.values())

    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(StackName="api", TemplateBody=json.dumps(template()))
    stack = cloudformation.describe_stacks(StackName="api")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    resources = cloudformation.describe_stack_resources(StackName="api")["StackResources"]
    api_id = next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "Api")
    apigateway = boto3.client("apigateway", region_name=REGION)
    items = apigateway.get_resources(restApiId=api_id)["items"]
    methods = {r["path"]: set(r.get("resourceMethods", {})) for r in items}
    assert methods["/v1/login"] == {"POST", "OPTIONS"}
    assert methods["/v1/channels/{channel+}"] == {"GET", "OPTIONS"}
    channel = next(r["id"] for r in items if r["path"] == "/v1/channels/{channel+}")
    proxied = apigateway.get_integration(restApiId=api_id, resourceId=channel, httpMethod="GET")
    assert proxied["type"].upper() == "AWS_PROXY"  # moto keeps the case of the document
    assert proxied["uri"].endswith(":function:${stageVariables.channelsFunction}/invocations")
    preflight = apigateway.get_integration(
        restApiId=api_id, resourceId=channel, httpMethod="OPTIONS"
    )
    assert preflight["type"].upper() == "MOCK"
