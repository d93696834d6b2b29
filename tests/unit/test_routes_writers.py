"""``writers`` in the routes: how it is parsed and refused, checked against the tables'
partition keys, and turned into the authenticated role's DynamoDB statement."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth.policies import SUB_VARIABLE, WRITE_ACTIONS, PolicyScope, role_policy, write_statement
from backend.routes import RouteError, Writers, check_partition_keys, load_routes, parse_routes
from infra.local.awsauth.iam_policy import is_allowed, validate_policy

ROOT = Path(__file__).resolve().parents[2]
SCOPE = PolicyScope("us-east-1", "123456789012", "dev")
TODOS_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/todos"
ALICE = "us-east-1:aaaaaaaa-0000-4000-8000-000000000001"
BOB = "us-east-1:bbbbbbbb-0000-4000-8000-000000000002"


def route(writers: object) -> str:
    return (
        "routes:\n"
        "  - table: TodosTable\n"
        '    channels: ["users/{owner}/todos"]\n'
        '    readers: "owner:owner"\n'
        f"    writers: {writers}\n"
    )


def test_the_example_routes_let_owners_write_their_todos_only() -> None:
    routes = {r.table: r for r in load_routes(ROOT / "infra" / "routes.yaml")}
    assert routes["TodosTable"].writers == Writers("owner", "owner")
    assert routes["BoardsTable"].writers is None
    assert routes["ScoresTable"].writers is None


def test_writers_owner_placeholder_is_parsed() -> None:
    (parsed,) = parse_routes(route('"owner:owner"'))
    assert parsed.writers == Writers("owner", "owner")
    assert str(parsed.writers) == "owner:owner"


@pytest.mark.parametrize(
    "value",
    ['"public"', '"tenant:owner"', '"owner:"', '"owner"', '"owner:a-b"', "5", "[owner]", '""'],
)
def test_writers_other_than_owner_placeholder_are_refused(value: str) -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(route(value), "routes.yaml")
    message = str(refused.value)
    assert message.startswith("routes.yaml:2: 'writers' must be 'owner:<placeholder>'")
    assert "partition key" in message


def test_writers_must_name_a_placeholder_of_every_channel() -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(route('"owner:author"'), "routes.yaml")
    assert str(refused.value) == (
        "routes.yaml:2: writers 'owner:author' names {author}, "
        "which channel 'users/{owner}/todos' does not contain"
    )


def test_unknown_keys_name_writers_among_the_allowed() -> None:
    with pytest.raises(RouteError) as refused:
        parse_routes(route('"owner:owner"\n    writer: "owner:owner"'), "routes.yaml")
    assert "unknown key(s) writer" in str(refused.value)
    assert "readers, table, writers" in str(refused.value)


def test_writers_must_be_the_tables_partition_key() -> None:
    routes = parse_routes(route('"owner:owner"'), "routes.yaml")
    check_partition_keys(routes, {"TodosTable": "owner"}, "routes.yaml")
    with pytest.raises(RouteError) as refused:
        check_partition_keys(routes, {"TodosTable": "listId"}, "routes.yaml")
    assert str(refused.value) == (
        "routes.yaml:2: writers 'owner:owner' names 'owner', but the partition (HASH) key of "
        "TodosTable is 'listId'; IAM can only limit writes by the partition key "
        "(dynamodb:LeadingKeys)"
    )
    with pytest.raises(RouteError, match="does not declare as a DynamoDB table"):
        check_partition_keys(routes, {}, "routes.yaml")


def test_routes_without_writers_need_no_partition_key() -> None:
    routes = parse_routes(
        'routes:\n  - table: ScoresTable\n    channels: ["public/scores"]\n    readers: "public"\n'
    )
    check_partition_keys(routes, {}, "routes.yaml")


# --------------------------------------------------------------------------- the role


def test_the_role_gets_the_write_statement_only_with_the_tables_arns() -> None:
    routes = load_routes(ROOT / "infra" / "routes.yaml")
    without = role_policy(routes, SCOPE)
    assert not any("dynamodb:PutItem" in str(s["Action"]) for s in without["Statement"])
    arns = {"TodosTable": TODOS_ARN, "BoardsTable": "b", "ScoresTable": "s"}
    document = role_policy(routes, SCOPE, table_arns=arns)
    validate_policy(document)
    assert document["Statement"][-1] == write_statement(TODOS_ARN)
    assert write_statement(TODOS_ARN) == {
        "Effect": "Allow",
        "Action": list(WRITE_ACTIONS),
        "Resource": TODOS_ARN,
        "Condition": {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [SUB_VARIABLE]}},
    }
    assert not {"dynamodb:Scan", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem"} & set(
        WRITE_ACTIONS
    )
    with pytest.raises(KeyError):
        role_policy(routes, SCOPE, table_arns={"BoardsTable": "b"})


@pytest.mark.parametrize(
    ("action", "leading_keys", "allowed"),
    [
        ("dynamodb:PutItem", [ALICE], True),
        ("dynamodb:UpdateItem", [ALICE], True),
        ("dynamodb:DeleteItem", [ALICE], True),
        ("dynamodb:GetItem", [ALICE], True),
        ("dynamodb:Query", [ALICE], True),
        ("dynamodb:PutItem", [BOB], False),
        ("dynamodb:DeleteItem", [ALICE, BOB], False),
        ("dynamodb:PutItem", [ALICE.upper()], False),
        ("dynamodb:Scan", None, False),
        ("dynamodb:BatchWriteItem", [ALICE], False),
    ],
)
def test_the_write_statement_allows_the_identitys_own_partition_only(
    action: str, leading_keys: list[str] | None, allowed: bool
) -> None:
    document = {"Version": "2012-10-17", "Statement": [write_statement(TODOS_ARN)]}
    context = {} if leading_keys is None else {"dynamodb:LeadingKeys": leading_keys}
    variables = {"cognito-identity.amazonaws.com:sub": ALICE}
    assert is_allowed([[document]], action, TODOS_ARN, variables, context) is allowed
    other_table = TODOS_ARN.replace("todos", "boards")
    assert not is_allowed([[document]], action, other_table, variables, context)
