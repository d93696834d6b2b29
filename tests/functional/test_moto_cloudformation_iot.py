"""The differential test of the CloudFormation IoT fix
(``infra.local.motohost.fixes.cloudformation_iot``).

The same stack, an ``AWS::IoT::Policy`` and an ``AWS::IoT::RoleAlias`` named with ``!Sub`` as
the template names ThingPolicy and DeviceRoleAlias, goes to the local stack's moto process
(``infra.local.motohost.process``, every fix applied) and to moto as released
(``python -m moto.server``): the first answers as AWS does (``!Ref`` and the physical ids are
the names, ``GetPolicy`` answers JSON, ``DeleteStack`` deletes both), moto as released does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.parsers import ResponseParserError

from tests.functional.test_moto_patches import wait_until_serving
from tests.support.moto_server import free_port

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
STATEMENT = {"Effect": "Allow", "Action": "iot:AssumeRoleWithCertificate"}
ALIAS = "DeviceRoleAlias"
TEMPLATE = {
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Resources": {
        "DeviceRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "credentials.iot.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        ALIAS: {
            "Type": "AWS::IoT::RoleAlias",
            "Properties": {
                "RoleAlias": {"Fn::Sub": "tidings-${Stage}-device"},
                "RoleArn": {"Fn::GetAtt": ["DeviceRole", "Arn"]},
                "CredentialDurationSeconds": 3600,
            },
        },
        "ThingPolicy": {
            "Type": "AWS::IoT::Policy",
            "Properties": {
                "PolicyName": {"Fn::Sub": "tidings_${Stage}_thing"},
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            **STATEMENT,
                            "Resource": {"Fn::GetAtt": ["DeviceRoleAlias", "RoleAliasArn"]},
                        }
                    ],
                },
            },
        },
    },
}


@dataclass
class Motos:
    patched: str
    plain: str


def client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def motos() -> Iterator[Motos]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    patched = subprocess.Popen(
        [sys.executable, "-m", "infra.local.motohost.process", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    port = free_port()
    plain = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env=env,
    )
    try:
        assert patched.stdout is not None
        line = patched.stdout.readline().strip()
        assert line.startswith("READY "), line
        plain_url = f"http://127.0.0.1:{port}"
        wait_until_serving(plain_url)
        yield Motos(f"http://127.0.0.1:{line.split()[1]}", plain_url)
    finally:
        for process in (patched, plain):
            process.terminate()
            process.wait(timeout=10)


def create_stack(url: str) -> str:
    name = f"devices-{uuid.uuid4().hex[:8]}"
    client("cloudformation", url).create_stack(
        StackName=name, TemplateBody=json.dumps(TEMPLATE), Capabilities=["CAPABILITY_IAM"]
    )
    return name


def physical_ids(url: str, stack: str) -> dict[str, str | None]:
    resources = client("cloudformation", url).describe_stack_resources(StackName=stack)
    return {
        r["LogicalResourceId"]: r.get("PhysicalResourceId")
        for r in resources["StackResources"]
        if r["LogicalResourceId"] != "DeviceRole"
    }


def iot_names(url: str) -> tuple[list[str], list[str]]:
    iot = client("iot", url)
    return (
        [p["policyName"] for p in iot.list_policies()["policies"]],
        list(iot.list_role_aliases()["roleAliases"]),
    )


def test_the_fix_names_the_resources_and_answers_the_policy_document_as_json(
    motos: Motos,
) -> None:
    """``apply_cloudformation_iot_fix``: physical ids are the names, and ``GetPolicy`` answers
    the document as JSON; moto as released names no physical id and answers a Python repr."""
    answers = {}
    for url in (motos.patched, motos.plain):
        stack = create_stack(url)
        iot = client("iot", url)
        document = iot.get_policy(policyName="tidings_dev_thing")["policyDocument"]
        answers[url] = (physical_ids(url, stack), document)
        iot.delete_policy(policyName="tidings_dev_thing")
        iot.delete_role_alias(roleAlias="tidings-dev-device")

    ids, document = answers[motos.patched]
    assert ids == {"DeviceRoleAlias": "tidings-dev-device", "ThingPolicy": "tidings_dev_thing"}
    alias_arn = f"arn:aws:iot:{REGION}:123456789012:rolealias/tidings-dev-device"
    assert json.loads(document) == {
        "Version": "2012-10-17",
        "Statement": [{**STATEMENT, "Resource": alias_arn}],
    }

    ids, document = answers[motos.plain]
    assert ids == {"DeviceRoleAlias": None, "ThingPolicy": None}
    assert document.startswith("{'Version': '2012-10-17'")  # the dict's repr
    with pytest.raises(json.JSONDecodeError):
        json.loads(document)


def test_the_fix_deletes_the_policy_and_the_role_alias_with_their_stack(motos: Motos) -> None:
    """``apply_cloudformation_iot_fix``: ``DeleteStack`` deletes both resources; moto as
    released looks them up by the template's unresolved ``!Sub`` and leaves both."""
    stack = create_stack(motos.patched)
    assert iot_names(motos.patched) == (["tidings_dev_thing"], ["tidings-dev-device"])
    client("cloudformation", motos.patched).delete_stack(StackName=stack)
    assert iot_names(motos.patched) == ([], [])

    stack = create_stack(motos.plain)
    # the error of the last resource moto tried (in set order): a TypeError (an HTTP 500) or
    # IoT's ResourceNotFoundException, in JSON where CloudFormation answers XML
    with pytest.raises(ResponseParserError, match=r"Internal Server Error|ResourceNotFound"):
        client("cloudformation", motos.plain).delete_stack(StackName=stack)
    assert iot_names(motos.plain) == (["tidings_dev_thing"], ["tidings-dev-device"])
