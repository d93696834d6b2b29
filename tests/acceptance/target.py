"""The stack the acceptance suite runs against, known only by its outputs and endpoints.

:func:`select_target` decides, from the command line and the environment, whether the suite
starts the local stack (the default) or reads a deployed one; it does no I/O. A
:class:`Target` is then built from the local stack (:func:`local_target`) or from a
CloudFormation stack's outputs (:func:`aws_target`); the tests see nothing else, so they run
unchanged against both.

Choosing AWS: ``--stack NAME`` (and ``--region R``), or ``TIDINGS_AWS_TESTS=1`` with
``TIDINGS_STACK`` (and ``AWS_REGION``). An explicit option beats a variable. Nothing is ever
deployed: the stack must exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from client_sdk import ClientOptions, Tidings
    from infra.local.stack.local_stack import LocalStack

__all__ = [
    "AWS_TESTS_VARIABLE",
    "REQUIRED_OUTPUTS",
    "STACK_VARIABLE",
    "AwsChoice",
    "LocalChoice",
    "Target",
    "TargetError",
    "aws_target",
    "local_target",
    "select_target",
]

AWS_TESTS_VARIABLE = "TIDINGS_AWS_TESTS"
STACK_VARIABLE = "TIDINGS_STACK"
REGION_VARIABLES = ("AWS_REGION", "AWS_DEFAULT_REGION")
_YES = frozenset({"1", "true", "yes", "on"})
_NO = frozenset({"", "0", "false", "no", "off"})
STACK_NAME = re.compile(r"\A[A-Za-z][A-Za-z0-9-]{0,127}\Z")
"""CloudFormation's rule for a stack name."""
REQUIRED_OUTPUTS = (
    "ApiUrl",
    "IotDataEndpoint",
    "UsersTableName",
    "TodosTableName",
    "ChangeLogTableName",
)
"""What the suite reads from a stack (``infra/template.yaml`` ``Outputs``)."""


class TargetError(Exception):
    """The suite cannot run against the chosen target; the message says what to do."""


@dataclass(frozen=True)
class LocalChoice:
    """Start the local stack (``tidings up``) in this process."""


@dataclass(frozen=True)
class AwsChoice:
    """Read the outputs of a deployed stack."""

    stack: str
    region: str | None
    """None: the region of the default AWS configuration."""


def select_target(
    *, stack: str | None, region: str | None, environ: Mapping[str, str]
) -> LocalChoice | AwsChoice:
    """The target the options (``--stack``, ``--region``) and the environment ask for.

    Raises :class:`TargetError` when they contradict one another or AWS is chosen without
    a stack name.
    """
    flag = environ.get(AWS_TESTS_VARIABLE, "").strip().lower()
    if flag not in _YES | _NO:
        raise TargetError(
            f"{AWS_TESTS_VARIABLE}={environ[AWS_TESTS_VARIABLE]!r} is neither on nor off: set "
            "it to 1 to test a deployed stack, or to 0 (or unset it) for the local stack"
        )
    if stack is None and flag in _NO:
        if region is not None:
            raise TargetError(
                "--region names the region of a deployed stack: pass --stack NAME too "
                "(without either, the suite starts the local stack)"
            )
        return LocalChoice()
    name = (stack if stack is not None else environ.get(STACK_VARIABLE, "")).strip()
    if not name:
        raise TargetError(
            f"the acceptance tests were asked to run against AWS ({AWS_TESTS_VARIABLE}=1) but "
            f"no stack is named: pass --stack NAME or set {STACK_VARIABLE} to the stack that "
            "`tidings deploy --stack NAME` created"
        )
    if not STACK_NAME.match(name):
        raise TargetError(
            f"{name!r} is not a CloudFormation stack name (a letter, then letters, digits "
            "and hyphens, at most 128)"
        )
    redirected = sorted(k for k, v in environ.items() if k.startswith("AWS_ENDPOINT_URL") and v)
    if redirected:
        raise TargetError(
            f"{', '.join(redirected)} would send the tests' AWS calls somewhere other than "
            f"AWS (was .tidings/local.env sourced in this shell?): unset them to test stack "
            f"{name!r}"
        )
    chosen = region or next((environ[v] for v in REGION_VARIABLES if environ.get(v)), None)
    return AwsChoice(stack=name, region=chosen)


@dataclass(frozen=True)
class Target:
    """A running stack as a client and its operator see it."""

    description: str
    api_url: str
    """The ``ApiUrl`` output: ``POST /v1/login`` and the channels API."""
    region: str
    cognito_endpoint: str | None
    """Cognito Identity's endpoint; None on AWS (the region's public endpoint)."""
    iot_endpoint: str
    """The ``IotDataEndpoint`` output: where sign-in sends clients."""
    ca_file: str | None
    """The CA the stack's TLS endpoints use; None on AWS (the system trust store)."""
    outputs: Mapping[str, str]
    client: Callable[[str], Any]
    """``client("dynamodb")``: a boto3 client for the suite's own admin calls (the local
    stack's developer key, or the default credential chain on AWS)."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def tables(self) -> dict[str, str]:
        """Table names by logical id (``TodosTable``), from the ``<LogicalId>Name`` outputs."""
        return {
            key.removesuffix("Name"): value
            for key, value in self.outputs.items()
            if key.endswith("TableName")
        }

    @property
    def verify(self) -> str | bool:
        """What ``requests`` checks TLS certificates with."""
        return self.ca_file or True

    def client_options(self, **overrides: Any) -> ClientOptions:
        """Client options for this stack; nothing comes from the environment."""
        from client_sdk import ClientOptions

        return ClientOptions(
            ca_file=self.ca_file, cognito_endpoint=self.cognito_endpoint, **overrides
        )

    def connect(self, username: str, password: str, **overrides: Any) -> Tidings:
        """Sign ``username`` in with a password and connect, as an application does."""
        from client_sdk import Password, Tidings

        options = self.client_options(min_backoff_ms=200, max_backoff_ms=2000, **overrides)
        return Tidings.connect(self.api_url, Password(username, password), options=options)

    def add_user(self, name: str, password: str, tenants: set[str] | frozenset[str]) -> None:
        """``tidings users add NAME --password ... --tenant ...`` on the users table."""
        argv = ["add", name, f"--password={password}"]  # "=": a password may start with "-"
        for tenant in sorted(tenants):
            argv += ["--tenant", tenant]
        self._users_command(argv)

    def remove_user(self, name: str) -> None:
        """``tidings users remove NAME`` on the users table."""
        self._users_command(["remove", name])

    def _users_command(self, argv: list[str]) -> None:
        from infra.users_command import add_users_parser, run_users

        parser = argparse.ArgumentParser(prog="tidings")
        add_users_parser(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["users", *argv, "--table", self.tables["UsersTable"]])
        errors = io.StringIO()
        with self._lock, contextlib.redirect_stderr(errors):
            status = run_users(
                args, environ={}, dynamodb=self.client("dynamodb"), out=io.StringIO()
            )
        if status != 0:
            problem = errors.getvalue().strip()
            raise AssertionError(f"tidings users {argv[0]} {argv[1]}: {problem}")


def _check_outputs(outputs: Mapping[str, str], where: str) -> None:
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if missing:
        raise TargetError(
            f"{where} has no {', '.join(missing)} output: is it a Tidings stack deployed from "
            "this version of infra/template.yaml? (`tidings deploy` updates it)"
        )


def _cached(factory: Callable[[str], Any]) -> Callable[[str], Any]:
    """One client per service (boto3 sessions are not thread-safe; clients are)."""
    clients: dict[str, Any] = {}
    lock = threading.Lock()

    def client(service: str) -> Any:
        with lock:
            if service not in clients:
                clients[service] = factory(service)
            return clients[service]

    return client


def local_target(stack: LocalStack) -> Target:
    """The local stack, through its outputs and endpoints and its developer key."""
    outputs = dict(stack.outputs)
    _check_outputs(outputs, "the local stack")
    return Target(
        description="the local stack (tidings up)",
        api_url=outputs["ApiUrl"],
        region=stack.config.region,
        cognito_endpoint=stack.identity_url,
        iot_endpoint=outputs["IotDataEndpoint"],
        ca_file=stack.ca_file,
        outputs=outputs,
        client=_cached(stack.client),
    )


def aws_target(choice: AwsChoice) -> Target:
    """A deployed stack, from its CloudFormation outputs, with the default credential chain.

    Raises :class:`TargetError` when there is no region or no credentials, AWS cannot be
    reached, or the stack does not exist or lacks an output the suite needs.
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from infra.deploy import DeployError, stack_outputs

    try:
        session: Any = boto3.session.Session(region_name=choice.region)
    except BotoCoreError as exc:  # e.g. an AWS_PROFILE that does not exist
        raise TargetError(f"the AWS configuration cannot be used: {exc}") from exc
    region = session.region_name
    if not region:
        raise TargetError(
            f"which region is stack {choice.stack!r} in? pass --region R or set AWS_REGION"
        )
    config = Config(
        connect_timeout=10, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"}
    )

    def client(service: str) -> Any:
        return session.client(service, config=config)

    clients = _cached(client)
    try:
        outputs = stack_outputs(choice.stack, region, cloudformation=clients("cloudformation"))
    except DeployError as exc:
        raise TargetError(str(exc)) from exc
    _check_outputs(outputs, f"stack {choice.stack!r} in {region}")
    return Target(
        description=f"stack {choice.stack} in {region}",
        api_url=outputs["ApiUrl"].rstrip("/"),
        region=region,
        cognito_endpoint=None,
        iot_endpoint=outputs["IotDataEndpoint"],
        ca_file=None,
        outputs=outputs,
        client=clients,
    )
