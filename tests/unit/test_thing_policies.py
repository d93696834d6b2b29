"""The devices' documents derived from ``thing:`` readers, evaluated as AWS would.

- the thing policy (attached to device certificates), with
  ``iot:Connection.Thing.ThingName`` set to the connected thing;
- the policy of the role behind the devices' role alias, with ``credentials-iot:ThingName``
  set to the thing the AWS IoT credentials provider issued the credentials for.

Both must agree with :func:`backend.access.may_read` for a thing principal, and the
identities' documents must not open any thing's channel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from auth.policies import (
    PolicyScope,
    device_role_policy,
    iot_policies,
    role_policy,
    thing_policy,
)
from backend.access import Principal, may_read
from backend.routes import load_routes, parse_routes
from infra.local.awsauth.iam_policy import Decision, evaluate, is_allowed, validate_policy

ROOT = Path(__file__).resolve().parents[2]
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
REGION, ACCOUNT = "us-east-1", "123456789012"
SCOPE = PolicyScope(REGION, ACCOUNT, "dev")
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
ALIAS = f"{ARN}:rolealias/tidings-dev-device"
API = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1b2c3d4e5"
THING_NAME = "iot:Connection.Thing.ThingName"
CREDENTIALS_THING = "credentials-iot:ThingName"

# a thing route with a second placeholder, and one with several templates
EXTRA_ROUTES = parse_routes("""
routes:
  - table: Sensors
    channels: ["things/{thing}/sensors/{sensor}"]
    readers: "thing:thing"
  - table: Firmware
    channels: ["fleet/{thing}/firmware", "fleet/{thing}/firmware/latest"]
    readers: "thing:thing"
  - table: Scores
    channels: ["public/scores"]
    readers: "public"
""")


def thing_allows(routes: Any, thing: str | None, action: str, resource: str) -> bool:
    variables = {} if thing is None else {THING_NAME: thing}
    return is_allowed([[thing_policy(routes, SCOPE, ALIAS)]], action, resource, variables)


def mqtt(action: str, channel: str) -> str:
    kind = "topicfilter" if action == "iot:Subscribe" else "topic"
    return f"{ARN}:{kind}/tidings/dev/{channel}"


CASES = [
    # (routes, thing, channel, may read?)
    (ROUTES, "thing1", "things/thing1/settings", True),
    (ROUTES, "thing1", "things/thing2/settings", False),
    (ROUTES, "thing2", "things/thing2/settings", True),
    (ROUTES, "thing2", "things/thing1/settings", False),
    (ROUTES, "thing1", "things/thing1/settings/x", False),
    (ROUTES, "thing1", "things/thing1", False),
    (ROUTES, "thing1", "public/scores", False),
    (ROUTES, "thing1", "tenants/acme/board", False),
    (ROUTES, "thing1", "users/thing1/todos", False),
    (ROUTES, "a:b_c-d", "things/a:b_c-d/settings", True),
    (EXTRA_ROUTES, "thing1", "things/thing1/sensors/t1", True),
    (EXTRA_ROUTES, "thing1", "things/thing2/sensors/t1", False),
    (EXTRA_ROUTES, "thing1", "things/thing1/sensors/t1/more", False),  # spill across segments
    (EXTRA_ROUTES, "thing1", "fleet/thing1/firmware", True),
    (EXTRA_ROUTES, "thing1", "fleet/thing1/firmware/latest", True),
    (EXTRA_ROUTES, "thing1", "fleet/thing2/firmware/latest", False),
    (EXTRA_ROUTES, "thing1", "public/scores", False),
]


@pytest.mark.parametrize("action", ["iot:Subscribe", "iot:Receive"])
@pytest.mark.parametrize(("routes", "thing", "channel", "expected"), CASES)
def test_may_read_and_the_thing_policy_agree(routes, thing, channel, expected, action) -> None:
    assert may_read(routes, Principal.of_thing(thing), channel) is expected
    assert thing_allows(routes, thing, action, mqtt(action, channel)) is expected


SPILLS = {"things/thing1/sensors/t1/more"}
"""Paths IAM's ``*`` lets through on the channels API (it spans ``/``): not channels, so the
API refuses them (:func:`test_the_api_refuses_what_the_device_role_lets_through`)."""


@pytest.mark.parametrize(("routes", "thing", "channel", "expected"), CASES)
def test_may_read_and_the_device_role_agree(routes, thing, channel, expected) -> None:
    document = device_role_policy(routes, API)
    for path in (channel, f"{channel}/changes"):
        resource = f"{API}/dev/GET/v1/channels/{path}"
        variables = {CREDENTIALS_THING: thing}
        allowed = is_allowed([[document]], "execute-api:Invoke", resource, variables)
        assert allowed is (expected or channel in SPILLS), resource


def test_the_api_refuses_what_the_device_role_lets_through() -> None:
    document = device_role_policy(EXTRA_ROUTES, API)
    thing1 = Principal.of_thing("thing1")
    for channel in SPILLS:
        resource = f"{API}/dev/GET/v1/channels/{channel}"
        variables = {CREDENTIALS_THING: "thing1"}
        assert is_allowed([[document]], "execute-api:Invoke", resource, variables)
        assert not may_read(EXTRA_ROUTES, thing1, channel)


@pytest.mark.parametrize("path", ["things/thing1/settings", "things/thing1/settings/changes"])
def test_the_device_role_needs_the_thing_name_in_the_credentials(path: str) -> None:
    # a device that did not send x-amzn-iot-thingname has no credentials-iot:ThingName
    document = device_role_policy(ROUTES, API)
    resource = f"{API}/dev/GET/v1/channels/{path}"
    assert is_allowed([[document]], "execute-api:Invoke", resource, {CREDENTIALS_THING: "thing1"})
    assert not is_allowed([[document]], "execute-api:Invoke", resource, {})
    assert not is_allowed(
        [[document]], "execute-api:Invoke", resource, {CREDENTIALS_THING: "thing2"}
    )
    # other HTTP methods and other APIs are not allowed
    post = resource.replace("/GET/", "/POST/")
    other_api = resource.replace("a1b2c3d4e5", "zzzzzzzzzz")
    for refused in (post, other_api):
        assert not is_allowed(
            [[document]], "execute-api:Invoke", refused, {CREDENTIALS_THING: "thing1"}
        )


@pytest.mark.parametrize(
    ("thing", "client_id", "expected"),
    [
        ("thing1", "thing1", True),
        ("thing1", "thing2", False),
        ("thing1", "thing1-web", False),
        ("thing1", "thing", False),
        (None, "thing1", False),  # no thing attached to the certificate: the variable is unset
    ],
)
def test_a_thing_connects_with_its_own_name_only(thing, client_id, expected) -> None:
    assert thing_allows(ROUTES, thing, "iot:Connect", f"{ARN}:client/{client_id}") is expected


@pytest.mark.parametrize("thing", ["thing1", None])
def test_a_certificate_may_assume_the_device_role_alias_only(thing) -> None:
    action = "iot:AssumeRoleWithCertificate"
    assert thing_allows(ROUTES, thing, action, ALIAS)
    assert not thing_allows(ROUTES, thing, action, f"{ARN}:rolealias/other")


@pytest.mark.parametrize(
    "topic_filter",
    [
        "tidings/dev/things/+/settings",
        "tidings/dev/things/#",
        "tidings/dev/#",
        "#",
        "tidings/dev/things/thing1/#",
    ],
)
def test_wildcard_filters_over_other_things_are_refused(topic_filter: str) -> None:
    resource = f"{ARN}:topicfilter/{topic_filter}"
    assert not thing_allows(ROUTES, "thing1", "iot:Subscribe", resource)


@pytest.mark.parametrize(("routes", "thing", "channel", "expected"), CASES)
def test_no_thing_may_publish(routes, thing, channel, expected) -> None:
    for action in ("iot:Publish", "iot:RetainPublish"):
        assert not thing_allows(routes, thing, action, f"{ARN}:topic/tidings/dev/{channel}")


def test_a_placeholder_spilling_across_segments_is_denied_explicitly() -> None:
    document = thing_policy(EXTRA_ROUTES, SCOPE, ALIAS)
    resource = mqtt("iot:Receive", "things/thing1/sensors/a/b")
    decision = evaluate([document], "iot:Receive", resource, {THING_NAME: "thing1"})
    assert decision is Decision.EXPLICIT_DENY


@pytest.mark.parametrize("routes", [ROUTES, EXTRA_ROUTES])
def test_the_identities_documents_open_no_things_channel(routes) -> None:
    identity = "us-east-1:aaaaaaaa-0000-4000-8000-000000000001"
    documents = [
        role_policy(routes, SCOPE, api_arn=API),
        *iot_policies(routes, SCOPE, {"acme"}).values(),
    ]
    text = json.dumps(documents)
    assert "things/" not in text and "fleet/" not in text
    assert "Thing" not in text and "credentials-iot" not in text
    variables = {"cognito-identity.amazonaws.com:sub": identity}
    for action in ("iot:Subscribe", "iot:Receive"):
        resource = mqtt(action, "things/thing1/settings")
        assert not is_allowed([[documents[0]], documents[1:]], action, resource, variables)


@pytest.mark.parametrize("routes", [ROUTES, EXTRA_ROUTES])
def test_the_device_documents_are_least_privilege(routes) -> None:
    documents = [thing_policy(routes, SCOPE, ALIAS), device_role_policy(routes, API)]
    for document in documents:
        validate_policy(document)
        for statement in document["Statement"]:
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            assert all("*" not in action for action in actions)
            assert not {"iot:Publish", "iot:RetainPublish", "iot:UpdateThingShadow"} & set(actions)
            resources = statement["Resource"]
            resources = resources if isinstance(resources, list) else [resources]
            for resource in resources:
                assert resource.startswith(
                    (
                        f"{ARN}:client/${{{THING_NAME}}}",
                        f"{ARN}:topic/tidings/dev/",
                        f"{ARN}:topicfilter/tidings/dev/",
                        f"{API}/*/GET/v1/channels/",
                        ALIAS,
                    )
                )
    # AWS IoT limits a policy document to 2048 characters without whitespace
    assert len(json.dumps(documents[0], separators=(",", ":"))) <= 2048


def test_without_thing_routes_the_device_role_allows_nothing() -> None:
    routes = parse_routes(
        'routes:\n  - table: T\n    channels: ["public/x"]\n    readers: public\n'
    )
    assert device_role_policy(routes, API) == {"Version": "2012-10-17", "Statement": []}
    document = thing_policy(routes, SCOPE, ALIAS)
    assert [s["Action"] for s in document["Statement"]] == [
        "iot:Connect",
        "iot:AssumeRoleWithCertificate",
    ]
