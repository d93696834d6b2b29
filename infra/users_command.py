"""``tidings users add|remove|list``: manage the password users of the sign-in table.

The table is found, in this order: ``--table``; ``--stack NAME`` (the ``UsersTableName``
output of that CloudFormation stack, i.e. a deployed stack); the ``TIDINGS_TABLE_USERSTABLE``
variable (set by the local stack's environment file). DynamoDB is reached through the
standard AWS settings (``AWS_ENDPOINT_URL_DYNAMODB``, ``AWS_REGION``, credentials), so the
same command serves the local stack and a deployed one.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from auth.errors import AuthError
from auth.passwords import hash_password
from auth.settings import ENV, PASSWORD_HASHES
from auth.store import UsersStore, validate_tenant, validate_username

__all__ = ["STACK_OUTPUT", "USERS_DESCRIPTION", "add_users_parser", "run_users"]

STACK_OUTPUT = "UsersTableName"
MIN_PASSWORD_LENGTH = 8


class UsersCommandError(Exception):
    """A mistake the operator can fix; the message says how."""


USERS_DESCRIPTION = """\
Add, remove and list the password users of the sign-in table, in the local stack or
a deployed one. The table is found in this order: --table; --stack NAME (the
UsersTableName output of that deployed stack); the TIDINGS_TABLE_USERSTABLE variable,
which the local stack's settings file sets (source .tidings/local.env). DynamoDB is
reached through the standard AWS settings (AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION,
credentials), so the same command serves the local stack and a deployed one."""


def add_users_parser(commands: Any, *, epilog: str | None = None) -> None:
    """Register ``users`` and its subcommands on the ``tidings`` subparsers object."""
    users = commands.add_parser(
        "users",
        help="add, remove and list the users who sign in with a password",
        description=USERS_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--stack",
        metavar="NAME",
        help=f"a deployed stack: the table is its {STACK_OUTPUT} output",
    )
    where.add_argument("--table", metavar="NAME", help="the sign-in table's name")
    actions = users.add_subparsers(
        dest="users_command", required=True, metavar="ACTION", title="actions"
    )

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(
            name,
            parents=[where],
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return parser

    add = action("add", "create a user who signs in with a password")
    add.add_argument(
        "username", help="the name the user signs in with: 1 to 128 letters, digits and _ . @ + -"
    )
    add.add_argument(
        "--password",
        help=f"the password, at least {MIN_PASSWORD_LENGTH} characters (asked for when omitted)",
    )
    add.add_argument(
        "--tenant",
        action="append",
        default=[],
        metavar="TENANT",
        help="a tenant the user belongs to; repeat it for several",
    )
    remove = action("remove", "delete a user")
    remove.add_argument("username", help="the user's name")
    action("list", "list the users, their user ids and their tenants")


def _table(args: argparse.Namespace, environ: Mapping[str, str], cloudformation: Any) -> str:
    if args.table:
        return str(args.table)
    if args.stack:
        client = cloudformation if cloudformation is not None else _client("cloudformation")
        try:
            stacks = client.describe_stacks(StackName=args.stack)["Stacks"]
        except (ClientError, BotoCoreError) as exc:
            raise UsersCommandError(f"stack {args.stack!r} could not be read: {exc}") from exc
        for output in stacks[0].get("Outputs", []) if stacks else []:
            if output.get("OutputKey") == STACK_OUTPUT:
                return str(output["OutputValue"])
        raise UsersCommandError(
            f"stack {args.stack!r} has no {STACK_OUTPUT} output; is it a Tidings stack?"
        )
    table = environ.get(ENV["users_table"])
    if table:
        return table
    raise UsersCommandError(
        f"which table? pass --table or --stack, or set {ENV['users_table']} "
        "(source the local stack's environment file)"
    )


def _client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service)  # type: ignore[call-overload]


def _password(args: argparse.Namespace) -> str:
    password = args.password
    if password is None:
        password = getpass.getpass(f"Password for {args.username}: ")
        if getpass.getpass("Again: ") != password:
            raise UsersCommandError("the passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsersCommandError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return str(password)


def run_users(
    args: argparse.Namespace,
    *,
    environ: Mapping[str, str] | None = None,
    dynamodb: Any = None,
    cloudformation: Any = None,
    out: TextIO | None = None,
) -> int:
    """Run one ``users`` subcommand; returns the exit status (errors go to stderr)."""
    env = os.environ if environ is None else environ
    stdout = out if out is not None else sys.stdout
    try:
        table = _table(args, env, cloudformation)
        store = UsersStore(dynamodb if dynamodb is not None else _client("dynamodb"), table)
        if args.users_command == "add":
            validate_username(args.username)
            tenants = frozenset(validate_tenant(t) for t in args.tenant)
            scheme = env.get(ENV["password_hash"], "argon2id")
            if scheme not in PASSWORD_HASHES:
                raise UsersCommandError(f"{ENV['password_hash']} must be one of {PASSWORD_HASHES}")
            account = store.add_user(args.username, hash_password(_password(args), scheme), tenants)
            print(
                f"added {account.name} (user id {account.user_id}"
                f"{', tenants ' + ', '.join(sorted(tenants)) if tenants else ''})",
                file=stdout,
            )
        elif args.users_command == "remove":
            store.remove_user(args.username)
            print(f"removed {args.username}", file=stdout)
        else:
            users = sorted(store.list_users(), key=lambda a: a.name)
            for account in users:
                print(
                    f"{account.name}\t{account.user_id}\t{','.join(sorted(account.tenants))}",
                    file=stdout,
                )
            if not users:
                print("no users", file=sys.stderr)
    except (UsersCommandError, AuthError) as exc:
        message = exc.message if isinstance(exc, AuthError) else str(exc)
        print(f"tidings users: {message}", file=sys.stderr)
        return 1
    except BotoCoreError as exc:
        print(f"tidings users: AWS is not reachable or not configured: {exc}", file=sys.stderr)
        return 1
    return 0
