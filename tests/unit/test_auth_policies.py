"""One authorisation model, three outputs: may_read, the role's IAM policy, the IoT policies.

The table of (identity, channel, action) cases is evaluated three ways; all must agree with
the expected answer. Least-privilege properties of the documents are checked separately.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from auth.policies import (
    PolicyScope,
    identity_iot_policy,
    iot_policies,
    policy_name,
    readable_channels,
    role_policy,
    tenant_iot_policy,
)
from backend.access import Principal, may_read
from backend.routes import load_routes, parse_routes
from infra.local.awsauth.iam_policy import is_allowed, validate_policy
from tests.support.moto_server import ROUTES_FILE

REGION, ACCOUNT = "us-east-1", "123456789012"
SCOPE = PolicyScope(REGION, ACCOUNT, "dev")
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
ALICE = Principal("us-east-1:aaaaaaaa-0000-4000-8000-000000000001", frozenset({"acme"}))
BOB = Principal("us-east-1:bbbbbbbb-0000-4000-8000-000000000002", frozenset({"globex", "acme"}))
EVE = Principal("us-east-1:eeeeeeee-0000-4000-8000-000000000003", frozenset())
ROUTES = load_routes(ROUTES_FILE)

# routes with more shapes than the example app: extra placeholders, several templates
EXTRA_ROUTES = parse_routes("""
routes:
  - table: Orders
    channels: ["tenants/{tenant}/orders/{orderId}", "tenants/{tenant}/orders"]
    readers: "tenant:tenant"
  - table: Notes
    channels: ["users/{owner}/notes/{noteId}"]
    readers: "owner:owner"
  - table: Games
    channels: ["public/{game}/scores"]
    readers: "public"
""")


def topic(channel: str) -> str:
    return f"tidings/dev/{channel}"


def policy_sets(routes: Any, principal: Principal) -> list[list[dict[str, Any]]]:
    return [
        [role_policy(routes, SCOPE)],
        list(iot_policies(routes, SCOPE, principal.tenants).values()),
    ]


def mqtt_allowed(routes: Any, principal: Principal, action: str, channel: str) -> tuple[bool, bool]:
    """(IAM role alone allows, role AND IoT policies allow) for a read action on a channel."""
    kind = "topicfilter" if action == "iot:Subscribe" else "topic"
    resource = f"{ARN}:{kind}/{topic(channel)}"
    variables = {"cognito-identity.amazonaws.com:sub": principal.identity_id}
    sets = policy_sets(routes, principal)
    return (
        is_allowed(sets[:1], action, resource, variables),
        is_allowed(sets, action, resource, variables),
    )


A, B = ALICE.identity_id, BOB.identity_id
CASES = [
    # (routes, principal, channel, may read?)
    (ROUTES, ALICE, f"users/{A}/todos", True),
    (ROUTES, ALICE, f"users/{B}/todos", False),
    (ROUTES, BOB, f"users/{B}/todos", True),
    (ROUTES, EVE, f"users/{A}/todos", False),
    (ROUTES, ALICE, "tenants/acme/board", True),
    (ROUTES, ALICE, "tenants/globex/board", False),
    (ROUTES, BOB, "tenants/globex/board", True),
    (ROUTES, BOB, "tenants/acme/board", True),
    (ROUTES, EVE, "tenants/acme/board", False),
    (ROUTES, ALICE, "public/scores", True),
    (ROUTES, EVE, "public/scores", True),
    (ROUTES, ALICE, "public/other", False),
    (ROUTES, ALICE, f"users/{A}/todos/extra", False),
    (ROUTES, ALICE, f"users/{A}", False),
    (ROUTES, ALICE, "tenants/acme/board/x", False),
    (ROUTES, ALICE, "tenants/acme/x/board", False),
    (ROUTES, ALICE, "unrouted/channel", False),
    (EXTRA_ROUTES, ALICE, "tenants/acme/orders/o-1", True),
    (EXTRA_ROUTES, ALICE, "tenants/acme/orders", True),
    (EXTRA_ROUTES, ALICE, "tenants/globex/orders/o-1", False),
    (EXTRA_ROUTES, ALICE, "tenants/acme/orders/o-1/more", False),  # spill across segments
    (EXTRA_ROUTES, BOB, "tenants/globex/orders/o-2", True),
    (EXTRA_ROUTES, ALICE, f"users/{A}/notes/n1", True),
    (EXTRA_ROUTES, ALICE, f"users/{A}/notes/n1/n2", False),
    (EXTRA_ROUTES, ALICE, f"users/{B}/notes/n1", False),
    (EXTRA_ROUTES, EVE, "public/chess/scores", True),
    (EXTRA_ROUTES, EVE, "public/chess/x/scores", False),
]


@pytest.mark.parametrize("action", ["iot:Subscribe", "iot:Receive"])
@pytest.mark.parametrize(("routes", "principal", "channel", "expected"), CASES)
def test_may_read_role_and_iot_policies_agree(routes, principal, channel, expected, action):
    assert may_read(routes, principal, channel) is expected
    role_allows, both_allow = mqtt_allowed(routes, principal, action, channel)
    assert both_allow is expected
    if expected:
        assert role_allows  # the role never narrows what the model allows


@pytest.mark.parametrize(("routes", "principal", "channel", "expected"), CASES)
def test_no_client_may_publish_to_any_channel(routes, principal, channel, expected):
    resource = f"{ARN}:topic/{topic(channel)}"
    variables = {"cognito-identity.amazonaws.com:sub": principal.identity_id}
    for action in ("iot:Publish", "iot:RetainPublish"):
        assert not is_allowed(policy_sets(routes, principal), action, resource, variables)


@pytest.mark.parametrize(
    ("client_id", "expected"),
    [
        (A, True),
        (f"{A}-web", True),
        (f"{A}-", True),
        (B, False),
        (f"{B}-{A}", False),
        (f"x{A}", False),
        ("anything", False),
    ],
)
def test_connect_only_with_client_ids_the_identity_owns(client_id, expected):
    variables = {"cognito-identity.amazonaws.com:sub": A}
    resource = f"{ARN}:client/{client_id}"
    assert is_allowed(policy_sets(ROUTES, ALICE), "iot:Connect", resource, variables) is expected


@pytest.mark.parametrize(
    "topic_filter",
    [
        "tidings/dev/#",
        "tidings/dev/users/+/todos",
        "tidings/dev/tenants/+/board",
        "tidings/dev/tenants/#",
        "tidings/#",
        "#",
        f"tidings/dev/users/{A}/#",
    ],
)
def test_wildcard_filters_over_other_identities_are_refused(topic_filter):
    variables = {"cognito-identity.amazonaws.com:sub": A}
    resource = f"{ARN}:topicfilter/{topic_filter}"
    assert not is_allowed(policy_sets(ROUTES, ALICE), "iot:Subscribe", resource, variables)


def test_tenant_channels_need_the_tenant_policy_not_just_the_role():
    # the role allows every tenant's board; only the attached tenant policy narrows it
    role_only, both = mqtt_allowed(ROUTES, ALICE, "iot:Subscribe", "tenants/globex/board")
    assert role_only and not both
    without_tenant_policy = [[role_policy(ROUTES, SCOPE)], [identity_iot_policy(ROUTES, SCOPE)]]
    resource = f"{ARN}:topicfilter/tidings/dev/tenants/acme/board"
    assert not is_allowed(
        without_tenant_policy, "iot:Subscribe", resource, {"cognito-identity.amazonaws.com:sub": A}
    )


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


@pytest.mark.parametrize("routes", [ROUTES, EXTRA_ROUTES])
def test_documents_are_least_privilege(routes):
    documents = [
        role_policy(routes, SCOPE, api_arn=f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1"),
        *iot_policies(routes, SCOPE, {"acme", "globex"}).values(),
    ]
    for document in documents:
        validate_policy(document)
        for statement in _statements(document):
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert all("*" not in action for action in actions)
            assert not {"iot:Publish", "iot:RetainPublish", "iot:UpdateThingShadow"} & set(actions)
            resources = (
                statement["Resource"]
                if isinstance(statement["Resource"], list)
                else [statement["Resource"]]
            )
            for resource in resources:
                assert resource.startswith(
                    (
                        f"{ARN}:client/",
                        f"{ARN}:topic/tidings/dev/",
                        f"{ARN}:topicfilter/tidings/dev/",
                        f"arn:aws:execute-api:{REGION}:{ACCOUNT}:a1/",
                    )
                )
    # AWS IoT limits a policy document to 2048 characters without whitespace
    for document in iot_policies(routes, SCOPE, {"acme"}).values():
        assert len(json.dumps(document, separators=(",", ":"))) <= 2048


def test_policy_names_are_valid_stable_and_change_with_the_document():
    names = iot_policies(ROUTES, SCOPE, {"acme", "a:b=c"})
    assert set(names) == set(iot_policies(ROUTES, SCOPE, {"a:b=c", "acme"}))
    for name in names:
        assert len(name) <= 128
        assert all(c.isalnum() or c in "_+=,.@-" for c in name)
    other = PolicyScope(REGION, ACCOUNT, "prod")
    assert set(iot_policies(ROUTES, other, {"acme"})).isdisjoint(names)
    base = identity_iot_policy(ROUTES, SCOPE)
    assert policy_name(SCOPE, "identity", base) != policy_name(
        SCOPE, "identity", identity_iot_policy(EXTRA_ROUTES, SCOPE)
    )
    assert tenant_iot_policy(ROUTES, SCOPE, "acme") != tenant_iot_policy(ROUTES, SCOPE, "globex")


def test_without_tenant_routes_no_tenant_policies_are_made():
    routes = parse_routes(
        'routes:\n  - table: T\n    channels: ["public/x"]\n    readers: public\n'
    )
    assert len(iot_policies(routes, SCOPE, {"acme"})) == 1


def test_readable_channels_lists_what_may_read_allows():
    channels = readable_channels(ROUTES, BOB)
    assert channels == [
        f"users/{B}/todos",
        "tenants/acme/board",
        "tenants/globex/board",
        "public/scores",
    ]
    assert all(may_read(ROUTES, BOB, c) for c in channels)
    assert readable_channels(EXTRA_ROUTES, ALICE) == [
        "tenants/acme/orders/{orderId}",
        "tenants/acme/orders",
        f"users/{A}/notes/{{noteId}}",
        "public/{game}/scores",
    ]
