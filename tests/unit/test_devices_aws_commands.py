"""The AWS CLI commands ``tidings deploy`` prints for adding a device to a stack on AWS: the
same calls ``tidings devices add`` makes against the local stack, in the same order."""

from __future__ import annotations

import shlex

from infra.deploy import aws_device_commands


def test_the_commands_are_the_calls_devices_add_makes() -> None:
    lines = aws_device_commands(
        "tidings_prod_thing",
        "tidings-prod-device",
        "abc-ats.iot.eu-west-1.amazonaws.com",
        "xyz.credentials.iot.eu-west-1.amazonaws.com",
        "eu-west-1",
    )
    commands = [shlex.split(line) for line in lines[1:6]]
    assert [c[:3] for c in commands[:2]] == [
        ["aws", "iot", "create-thing"],
        ["CERT_ARN=$(aws", "iot", "create-keys-and-certificate"],
    ]
    assert commands[2][:3] == ["aws", "iot", "attach-policy"]
    assert commands[2][commands[2].index("--policy-name") + 1] == "tidings_prod_thing"
    assert commands[3][:3] == ["aws", "iot", "attach-thing-principal"]
    assert all(c[c.index("--region") + 1].rstrip(")") == "eu-west-1" for c in commands[:4])
    assert commands[4] == [
        "curl",
        "-o",
        "root-ca.pem",
        "https://www.amazontrust.com/repository/AmazonRootCA1.pem",
    ]
    assert "abc-ats.iot.eu-west-1.amazonaws.com:8883" in lines[6]
    assert (
        "https://xyz.credentials.iot.eu-west-1.amazonaws.com/role-aliases/tidings-prod-device/"
        "credentials" in lines[6]
    )


def test_names_are_shell_quoted() -> None:
    lines = aws_device_commands("odd policy", "a", "d", "c", "us-east-1")
    attach = shlex.split(lines[3])
    assert attach[attach.index("--policy-name") + 1] == "odd policy"
