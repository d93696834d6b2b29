"""``tidings users add|remove|list`` against moto DynamoDB; the users it adds can log in."""

from __future__ import annotations

import io
import json

import pytest

from infra.cli import _build_parser
from infra.users_command import run_users
from tests.support.moto_server import TABLE, moto_client, signin_stack


@pytest.fixture(scope="module")
def stack():
    with signin_stack() as running:
        yield running


def run(
    stack, *argv: str, env: dict[str, str] | None = None, cloudformation=None
) -> tuple[int, str]:
    args = _build_parser().parse_args(["users", *argv])
    out = io.StringIO()
    environ = {"TIDINGS_TABLE_USERSTABLE": TABLE} if env is None else env
    status = run_users(
        args, environ=environ, dynamodb=stack.users.client, cloudformation=cloudformation, out=out
    )
    return status, out.getvalue()


def test_add_list_login_remove(stack, capsys):
    status, out = run(
        stack,
        "add",
        "zoe",
        "--password",
        "zoe-password-1",
        "--tenant",
        "acme",
        "--tenant",
        "globex",
    )
    assert status == 0 and "added zoe" in out and "acme, globex" in out
    status, out = run(stack, "list")
    line = next(entry for entry in out.splitlines() if entry.startswith("zoe\t"))
    assert line.endswith("\tacme,globex")
    answer = stack.login({"method": "password", "username": "zoe", "password": "zoe-password-1"})
    assert "tenants/globex/board" in answer["channels"]
    assert run(stack, "add", "zoe", "--password", "another-password")[0] == 1
    assert "already exists" in capsys.readouterr().err
    assert run(stack, "remove", "zoe")[0] == 0
    assert run(stack, "remove", "zoe")[0] == 1
    assert "no user" in capsys.readouterr().err.lower()
    status, _, _ = stack.post(
        {"method": "password", "username": "zoe", "password": "zoe-password-1"}
    )
    assert status == 401


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["add", "bad name", "--password", "long-enough"], "username"),
        (["add", "yan", "--password", "short"], "8 characters"),
        (["add", "yan", "--password", "long-enough", "--tenant", "a/b"], "Tenant"),
    ],
)
def test_bad_input_is_refused_with_a_reason(stack, capsys, argv, problem):
    assert run(stack, *argv)[0] == 1
    assert problem in capsys.readouterr().err


def test_the_table_must_be_named_somehow(stack, capsys):
    assert run(stack, "list", env={})[0] == 1
    assert "--table or --stack" in capsys.readouterr().err


def test_stack_resolves_the_table_from_cloudformation_outputs(stack):
    cloudformation = moto_client("cloudformation", stack.moto)
    template = {
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {"UsersTableName": {"Value": TABLE}},
    }
    cloudformation.create_stack(StackName="tidings-users-test", TemplateBody=json.dumps(template))
    run(
        stack,
        "add",
        "xena",
        "--password",
        "xena-password",
        "--stack",
        "tidings-users-test",
        env={},
        cloudformation=cloudformation,
    )
    status, out = run(
        stack, "list", "--stack", "tidings-users-test", env={}, cloudformation=cloudformation
    )
    assert status == 0 and "xena\t" in out
