"""``infra.local.motohost.fixes.mock_integrations``: a method with a ``MOCK`` integration (no
``IntegrationHttpMethod``, no ``Uri``, as AWS allows) deploys through moto's CloudFormation;
moto 5.2.5's own code fails on it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from infra.local.motohost.fixes.mock_integrations import apply_mock_integrations_fix

REGION = "us-east-1"
MOCK_INTEGRATION = {
    "Type": "MOCK",
    "RequestTemplates": {"application/json": '{"statusCode": 200}'},
    "IntegrationResponses": [{"StatusCode": "200"}],
}
TEMPLATE = {
    "Resources": {
        "Api": {"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "cors"}},
        "Preflight": {
            "Type": "AWS::ApiGateway::Method",
            "Properties": {
                "RestApiId": {"Ref": "Api"},
                "ResourceId": {"Fn::GetAtt": ["Api", "RootResourceId"]},
                "HttpMethod": "OPTIONS",
                "AuthorizationType": "NONE",
                "Integration": MOCK_INTEGRATION,
            },
        },
    }
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with mock_aws():
        yield


def test_moto_alone_fails_on_a_mock_integration_and_the_fix_deploys_it(aws) -> None:
    from moto.apigateway.models import Method

    apply_mock_integrations_fix()
    apigateway = boto3.client("apigateway", region_name=REGION)
    api = apigateway.create_rest_api(name="direct")
    root = apigateway.get_resources(restApiId=api["id"])["items"][0]["id"]
    original = Method._tidings_original_create_from_cloudformation_json  # type: ignore[attr-defined]
    spec = {"Properties": {**TEMPLATE["Resources"]["Preflight"]["Properties"]}}
    spec["Properties"].update(RestApiId=api["id"], ResourceId=root)
    with pytest.raises(KeyError, match="IntegrationHttpMethod"):
        original(Method, "Preflight", spec, "123456789012", REGION)

    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(StackName="cors", TemplateBody=json.dumps(TEMPLATE))
    stack = cloudformation.describe_stacks(StackName="cors")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    resources = cloudformation.describe_stack_resources(StackName="cors")["StackResources"]
    api_id = next(r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == "Api")
    root_id = apigateway.get_resources(restApiId=api_id)["items"][0]["id"]
    integration = apigateway.get_integration(
        restApiId=api_id, resourceId=root_id, httpMethod="OPTIONS"
    )
    assert integration["type"] == "MOCK"
