"""``infra/template.yaml`` holds what ``auth/policies.py`` derives from ``infra/routes.yaml``.

The template's copy of the derived policy must not drift from the model:

- the identity pool's authenticated role (``AuthenticatedRole``) has exactly one policy, and
  it equals :func:`auth.policies.role_policy` of the routes (with the API's execute-api ARN
  and the tables' ARNs), both resolved for the same region, account, stage and API id;
- every route's ``writers`` names its table's partition (HASH) key, as the template declares
  it (:func:`backend.routes.check_partition_keys`);
- the IoT policies are not in the template (the login creates and attaches them, named
  ``<prefix>-<label>-<hash>``): ``LoginRole`` must allow creating, reading and attaching every
  IoT policy :func:`auth.policies.iot_policies` derives, whatever the tenants;
- the devices' side: ``ThingPolicy``'s document equals :func:`auth.policies.thing_policy`
  (with ``DeviceRoleAlias``'s ARN) and ``DeviceRole``'s one policy equals
  :func:`auth.policies.device_role_policy`; the role alias points at that role, which trusts
  the AWS IoT credentials provider only; the outputs name the policy and the alias;
- every routed table's stream reaches the publisher: a mapping, the role's stream
  permission and the function's ``TIDINGS_TABLE_<ID>``.
"""

from __future__ import annotations

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
from backend.routes import RouteError, check_partition_keys, load_routes, parse_routes
from infra.local.awsauth.iam_policy import is_allowed
from infra.local.stack.template_model import Resolver, Template, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
ROUTES = load_routes(ROOT / "infra" / "routes.yaml")
SCOPES = [
    (PolicyScope("us-east-1", "123456789012", "dev"), "a1b2c3d4e5"),
    (PolicyScope("eu-west-1", "111122223333", "prod"), "zz9plural"),
]
IDS = [f"{scope.region}-{scope.stage}" for scope, _ in SCOPES]


def table_arns(scope: PolicyScope) -> dict[str, str]:
    """Each table's ARN (logical id → ARN) as a stack deployed with ``scope`` would have it."""
    arn = f"arn:aws:dynamodb:{scope.region}:{scope.account_id}:table"
    tables = load_template(TEMPLATE).tables()
    return {logical: f"{arn}/{scope.stage}-{logical.lower()}" for logical in tables}


def role_alias_arn(scope: PolicyScope) -> str:
    """``DeviceRoleAlias``'s ARN as a stack deployed with ``scope`` would have it."""
    return f"{scope.arn}:rolealias/tidings-{scope.stage}-device"


def resolver(scope: PolicyScope, api_id: str) -> Resolver:
    """The template's references as a stack deployed with ``scope`` would resolve them."""
    return Resolver(
        parameters={"Stage": scope.stage},
        physical_ids={"Api": api_id, "IdentityPool": f"{scope.region}:pool"},
        attributes={
            **{(logical, "Arn"): arn for logical, arn in table_arns(scope).items()},
            ("DeviceRoleAlias", "RoleAliasArn"): role_alias_arn(scope),
            ("DeviceRole", "Arn"): f"arn:aws:iam::{scope.account_id}:role/device",
        },
        pseudo={
            "AWS::Region": scope.region,
            "AWS::AccountId": scope.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        },
    )


def identity_role_drift(template: Template, scope: PolicyScope, api_id: str) -> list[Any]:
    """What differs between the authenticated role's policies and the derived one ([] if none)."""
    documents = resolver(scope, api_id)(template.role_policies("AuthenticatedRole"))
    api_arn = f"arn:aws:execute-api:{scope.region}:{scope.account_id}:{api_id}"
    derived = role_policy(ROUTES, scope, api_arn, table_arns(scope))
    if documents == [derived]:
        return []
    return [documents, derived]


def device_drift(template: Template, scope: PolicyScope, api_id: str) -> list[Any]:
    """What differs between the thing policy and device role and the derived ones ([] if none)."""
    resolve = resolver(scope, api_id)
    thing = resolve(template.properties("ThingPolicy")["PolicyDocument"])
    role = resolve(template.role_policies("DeviceRole"))
    api_arn = f"arn:aws:execute-api:{scope.region}:{scope.account_id}:{api_id}"
    derived_thing = thing_policy(ROUTES, scope, role_alias_arn(scope))
    derived_role = device_role_policy(ROUTES, api_arn)
    drift = []
    if thing != derived_thing:
        drift.append([thing, derived_thing])
    if role != [derived_role]:
        drift.append([role, [derived_role]])
    return drift


@pytest.mark.parametrize(("scope", "api_id"), SCOPES, ids=IDS)
def test_the_authenticated_role_policy_is_the_one_derived_from_the_routes(
    scope: PolicyScope, api_id: str
) -> None:
    assert identity_role_drift(load_template(TEMPLATE), scope, api_id) == []


@pytest.mark.parametrize(
    "edit",
    [
        # a channel removed, a Deny dropped, a resource scoped to another stage
        lambda t: t.replace(
            '                  - !Sub "arn:aws:iot:${AWS::Region}:${AWS::AccountId}:topic/tidings/'
            '${Stage}/public/scores"\n',
            "",
            1,
        ),
        lambda t: t.replace("              - Effect: Deny\n", "              - Effect: Allow\n", 1),
        lambda t: t.replace("topicfilter/tidings/${Stage}/", "topicfilter/tidings/dev/", 1),
        # the writers' statement: on another table, without its partition condition, or
        # allowing Scan too
        lambda t: t.replace(
            "                Resource: !GetAtt TodosTable.Arn\n                Condition:",
            "                Resource: !GetAtt BoardsTable.Arn\n                Condition:",
            1,
        ),
        lambda t: t.replace('"ForAllValues:StringEquals":', '"ForAnyValue:StringEquals":', 1),
        lambda t: t.replace(
            "                  - dynamodb:Query\n                  - dynamodb:UpdateItem\n",
            "                  - dynamodb:Query\n                  - dynamodb:Scan\n"
            "                  - dynamodb:UpdateItem\n",
            1,
        ),
    ],
    ids=[
        "channel-removed",
        "deny-dropped",
        "stage-hard-coded",
        "writes-on-another-table",
        "writes-any-partition",
        "writes-with-scan",
    ],
)
def test_a_drifted_template_is_caught(edit: Any, tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    drifted = edit(text)
    assert drifted != text, "the edit did not change the template"
    (tmp_path / "template.yaml").write_text(drifted, encoding="utf-8")
    template = load_template(tmp_path / "template.yaml")
    scope, api_id = SCOPES[1]  # stage prod: a hard-coded "dev" is a drift
    assert identity_role_drift(template, scope, api_id) != []


@pytest.mark.parametrize(("scope", "api_id"), SCOPES, ids=IDS)
def test_the_thing_policy_and_device_role_are_the_ones_derived_from_the_routes(
    scope: PolicyScope, api_id: str
) -> None:
    assert any(route.readers.kind == "thing" for route in ROUTES), "routes.yaml has things"
    assert device_drift(load_template(TEMPLATE), scope, api_id) == []


@pytest.mark.parametrize(
    "edit",
    [
        # the thing policy: another thing's channel, any client id, no role alias, a second
        # stage; the device role: every thing's channels
        lambda t: t.replace(
            "topicfilter/tidings/${Stage}/things/${!iot:Connection.Thing.ThingName}/",
            "topicfilter/tidings/${Stage}/things/*/",
            1,
        ),
        lambda t: t.replace(
            ":client/${!iot:Connection.Thing.ThingName}", ":client/${!iot:ClientId}", 1
        ),
        lambda t: t.replace(
            "            Action: iot:AssumeRoleWithCertificate\n"
            "            Resource: !GetAtt DeviceRoleAlias.RoleAliasArn\n",
            '            Action: iot:AssumeRoleWithCertificate\n            Resource: "*"\n',
            1,
        ),
        lambda t: t.replace("topic/tidings/${Stage}/things/", "topic/tidings/dev/things/", 1),
        lambda t: t.replace(
            "GET/v1/channels/things/${!credentials-iot:ThingName}/settings/changes",
            "GET/v1/channels/things/*/settings/changes",
            1,
        ),
    ],
    ids=[
        "other-things-channels",
        "any-client-id",
        "any-role-alias",
        "stage-hard-coded",
        "role-reads-every-thing",
    ],
)
def test_a_drifted_device_side_is_caught(edit: Any, tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    drifted = edit(text)
    assert drifted != text, "the edit did not change the template"
    (tmp_path / "template.yaml").write_text(drifted, encoding="utf-8")
    template = load_template(tmp_path / "template.yaml")
    scope, api_id = SCOPES[1]  # stage prod: a hard-coded "dev" is a drift
    assert device_drift(template, scope, api_id) != []
    assert identity_role_drift(template, scope, api_id) == []  # only the device side moved


@pytest.mark.parametrize(("scope", "api_id"), SCOPES, ids=IDS)
def test_the_role_alias_lends_the_device_role_to_the_credentials_provider_only(
    scope: PolicyScope, api_id: str
) -> None:
    template = load_template(TEMPLATE)
    resolve = resolver(scope, api_id)
    alias = template.properties("DeviceRoleAlias")
    assert alias["RoleArn"] == {"Fn::GetAtt": ["DeviceRole", "Arn"]}
    role = template.properties("DeviceRole")
    # AWS IoT refuses an alias whose credentials outlive the role's sessions (default 3600 s)
    assert int(alias["CredentialDurationSeconds"]) <= int(role.get("MaxSessionDuration", 3600))
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "credentials.iot.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]
    names = ("DeviceRoleAliasName", "ThingPolicyName")
    outputs = {name: resolve(template.body["Outputs"][name]["Value"]) for name in names}
    assert outputs["DeviceRoleAliasName"] == resolve(alias["RoleAlias"])
    assert role_alias_arn(scope).endswith("/" + outputs["DeviceRoleAliasName"])
    policy = template.properties("ThingPolicy")
    assert outputs["ThingPolicyName"] == resolve(policy["PolicyName"])
    # not one of the identities' policies, which LoginRole may create and attach
    login = resolve(template.role_policies("LoginRole"))
    resource = f"{scope.arn}:policy/{outputs['ThingPolicyName']}"
    assert not is_allowed([login], "iot:AttachPolicy", resource, {})


def test_every_routed_table_streams_to_the_publisher() -> None:
    template = load_template(TEMPLATE)
    mapped = {
        mapping.table
        for mapping in template.event_source_mappings()
        if mapping.function == "PublisherFunction"
    }
    (publisher_policy,) = template.role_policies("PublisherRole")
    streams = [
        resource
        for statement in publisher_policy["Statement"]
        if "dynamodb:GetRecords" in statement["Action"]
        for resource in statement["Resource"]
    ]
    environment = template.functions()["PublisherFunction"].environment
    for table in sorted({route.table for route in ROUTES}):
        assert table in template.tables(), table
        assert table in mapped, f"{table} has no stream mapping"
        assert {"Fn::GetAtt": [table, "StreamArn"]} in streams, f"{table}'s stream"
        assert environment.get(f"TIDINGS_TABLE_{table.upper()}") == {"Ref": table}


@pytest.mark.parametrize(("scope", "api_id"), SCOPES, ids=IDS)
def test_the_login_role_may_manage_every_iot_policy_the_routes_derive(
    scope: PolicyScope, api_id: str
) -> None:
    documents = resolver(scope, api_id)(load_template(TEMPLATE).role_policies("LoginRole"))
    tenants = ["acme", "globex-corp", "t_1"]
    names = list(iot_policies(ROUTES, scope, tenants))
    assert len(names) == 1 + len(tenants)  # the identity's policy and one per tenant
    for name in names:
        resource = f"{scope.arn}:policy/{name}"
        for action in ("iot:CreatePolicy", "iot:GetPolicy", "iot:AttachPolicy"):
            assert is_allowed([documents], action, resource, {}), (action, resource)
    # and nothing beyond this stage's policies
    other = f"{scope.arn}:policy/tidings-{scope.stage}x-identity-0"
    assert not is_allowed([documents], "iot:AttachPolicy", other, {})


def partition_keys() -> dict[str, str]:
    """Each table's HASH key, from the template's KeySchema."""
    out = {}
    for logical, props in load_template(TEMPLATE).tables().items():
        for element in props["KeySchema"]:
            if element["KeyType"] == "HASH":
                out[logical] = element["AttributeName"]
    return out


def test_every_routes_writers_name_its_tables_partition_key() -> None:
    assert any(route.writers for route in ROUTES), "routes.yaml declares writers"
    check_partition_keys(ROUTES, partition_keys(), "infra/routes.yaml")


@pytest.mark.parametrize(
    ("route", "problem"),
    [
        (
            'table: TodosTable\n    channels: ["users/{owner}/todos/{id}"]\n'
            '    readers: "owner:owner"\n    writers: "owner:id"',
            "but the partition (HASH) key of TodosTable is 'owner'",
        ),
        (
            'table: NotesTable\n    channels: ["users/{owner}/notes"]\n'
            '    readers: "owner:owner"\n    writers: "owner:owner"',
            "which the template does not declare as a DynamoDB table",
        ),
    ],
    ids=["not-the-hash-key", "unknown-table"],
)
def test_writers_that_are_not_the_tables_partition_key_are_refused(
    route: str, problem: str
) -> None:
    routes = parse_routes(f"routes:\n  - {route}\n", "routes.yaml")
    with pytest.raises(RouteError) as refused:
        check_partition_keys(routes, partition_keys(), "routes.yaml")
    assert str(refused.value).startswith("routes.yaml:2: writers ")
    assert problem in str(refused.value)
