"""``tidings devices add|list|deactivate|remove``: the X.509 devices of a running local stack.

A device is an AWS IoT thing with a certificate attached, and the stack's thing policy
attached to the certificate, made with the calls one makes on AWS (``CreateThing``,
``CreateKeysAndCertificate``, ``AttachPolicy``, ``AttachThingPrincipal``) against the stack's
IoT control plane (moto, whose ``CreateKeysAndCertificate`` signs with the stack's device CA).
The stack is found through its settings file, ``STATE_DIR/local.env`` (written by
``tidings up``): its IoT endpoint and the developer's key pair.

``add`` writes what a device needs into ``--out`` (default: the current folder):
``NAME.cert.pem``, ``NAME.private.key`` (readable by its owner only), ``root-ca.pem`` (the CA
that signs the stack's servers: AmazonRootCA1's part) and ``NAME.json`` (the thing, the
certificate and the endpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

__all__ = [
    "DEVICES_DESCRIPTION",
    "DevicesCommandError",
    "add_devices_parser",
    "read_settings_file",
    "run_devices",
    "stack_value",
]

THING_POLICY = ("ThingPolicy", "AWS::IoT::Policy")
"""The template's thing policy: its logical id and type."""
THING_POLICY_OUTPUT = "ThingPolicyName"
"""The template's output that names the thing policy."""
ROLE_ALIAS = ("DeviceRoleAlias", "AWS::IoT::RoleAlias")
"""The template's role alias for the credentials provider: its logical id and type."""
ROLE_ALIAS_OUTPUT = "DeviceRoleAliasName"
"""The template's output that names the role alias."""
ROOT_CA_FILE = "root-ca.pem"
_THING_NAME = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")  # AWS IoT's thing names


class DevicesCommandError(Exception):
    """A mistake the operator can fix; the message says how."""


DEVICES_DESCRIPTION = """\
Add, list, deactivate and remove the devices of the running local stack: AWS IoT
things, each with a certificate signed by the stack's device CA and the stack's thing
policy attached, made with the same AWS IoT calls as on AWS. The stack is found through
its settings file, STATE_DIR/local.env, which tidings up writes."""


def add_devices_parser(commands: Any, *, epilog: str | None = None) -> None:
    """Register ``devices`` and its subcommands on the ``tidings`` subparsers object."""
    devices = commands.add_parser(
        "devices",
        help="add, list, deactivate and remove the devices (X.509 things) of the local stack",
        description=DEVICES_DESCRIPTION,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".tidings"),
        metavar="DIR",
        help="the running stack's state folder, which holds local.env (default .tidings)",
    )
    actions = devices.add_subparsers(
        dest="devices_command", required=True, metavar="ACTION", title="actions"
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

    add = action(
        "add",
        "create a thing with a new certificate and the thing policy, and write the device's "
        "files: NAME.cert.pem, NAME.private.key, root-ca.pem and NAME.json",
    )
    add.add_argument("name", help="the thing's name: 1 to 128 letters, digits and : _ -")
    add.add_argument(
        "--policy-name",
        metavar="POLICY",
        help="the IoT policy to attach (default: the stack's ThingPolicy)",
    )
    add.add_argument(
        "--out",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="where to write the device's files (default: the current folder)",
    )
    action("list", "list the things, their certificate ids and the certificates' statuses")
    deactivate = action("deactivate", "set a thing's certificates INACTIVE: they cannot connect")
    deactivate.add_argument("name", help="the thing's name")
    remove = action(
        "remove",
        "detach a thing's policies and certificates, delete its certificates and the thing",
    )
    remove.add_argument("name", help="the thing's name")


# ---------------------------------------------------------------------- the settings file
def read_settings_file(path: Path) -> dict[str, str]:
    """The ``export NAME=value`` lines of a settings file that ``tidings up`` writes."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


def _settings(state_dir: Path) -> dict[str, str]:
    path = state_dir / "local.env"
    try:
        settings = read_settings_file(path)
    except FileNotFoundError:
        raise DevicesCommandError(
            f"no local stack: {path} does not exist; start one with tidings up "
            "(or pass --state-dir, the folder tidings up was given)"
        ) from None
    except (OSError, ValueError) as exc:
        raise DevicesCommandError(f"{path} could not be read: {exc}") from exc
    missing = [
        name
        for name in ("AWS_ENDPOINT_URL_IOT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        if not settings.get(name)
    ]
    if missing:
        raise DevicesCommandError(
            f"{path} has no {', '.join(missing)}: it was not written by tidings up; "
            "restart the stack"
        )
    return settings


def _client(service: str, settings: Mapping[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        region_name=settings.get("AWS_REGION") or "us-east-1",
    )
    endpoint = (
        settings.get(f"AWS_ENDPOINT_URL_{service.upper()}") or settings["AWS_ENDPOINT_URL_IOT"]
    )
    return session.client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint,
        config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
    )


# ---------------------------------------------------------------------- the command
def run_devices(
    args: argparse.Namespace,
    *,
    iot: Any = None,
    cloudformation: Any = None,
    out: TextIO | None = None,
) -> int:
    """Run one ``devices`` subcommand; returns the exit status (errors go to stderr)."""
    stdout = out if out is not None else sys.stdout
    endpoint = "the local stack"
    try:
        settings = _settings(args.state_dir)
        endpoint = settings["AWS_ENDPOINT_URL_IOT"]
        iot = iot if iot is not None else _client("iot", settings)
        if args.devices_command == "add":
            cfn = (
                cloudformation
                if cloudformation is not None
                else _client("cloudformation", settings)
            )
            _add(args, settings, iot, cfn, stdout)
        elif args.devices_command == "list":
            _list(iot, stdout)
        elif args.devices_command == "deactivate":
            for cert_id in _deactivate(iot, args.name):
                print(f"deactivated {args.name}: certificate {cert_id} is INACTIVE", file=stdout)
        else:
            _remove(iot, args.name, stdout)
    except DevicesCommandError as exc:
        print(f"tidings devices: {exc}", file=sys.stderr)
        return 1
    except EndpointConnectionError:
        print(
            f"tidings devices: the local stack of {args.state_dir / 'local.env'} is not "
            f"running (nothing answers at {endpoint}); start it with tidings up",
            file=sys.stderr,
        )
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(
            f"tidings devices: AWS IoT refused: {error.get('Code', 'error')}: "
            f"{error.get('Message', exc)}",
            file=sys.stderr,
        )
        return 1
    except BotoCoreError as exc:
        print(f"tidings devices: AWS IoT is not reachable: {exc}", file=sys.stderr)
        return 1
    return 0


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def stack_value(cloudformation: Any, output_key: str, logical: tuple[str, str]) -> str | None:
    """The stack's output ``output_key``, else the physical id of its resource with
    this logical id and type (moto 5.2.5 leaves an IoT resource's physical id empty, and
    answers ``DescribeStackResources`` without logical ids: its outputs are read first, and
    its resources through ``ListStackResources``)."""
    logical_id, resource_type = logical
    stacks = cloudformation.describe_stacks().get("Stacks", [])
    for stack in stacks:
        for output in stack.get("Outputs", []):
            if output.get("OutputKey") == output_key and output.get("OutputValue"):
                return str(output["OutputValue"])
    for stack in stacks:
        try:
            pages = list(
                _pages(
                    cloudformation.list_stack_resources,
                    "StackResourceSummaries",
                    StackName=stack["StackName"],
                    token_key="NextToken",
                )
            )
        except ClientError:
            continue
        for resource in pages:
            if (
                resource.get("LogicalResourceId") == logical_id
                and resource.get("ResourceType") == resource_type
                and resource.get("PhysicalResourceId")
            ):
                return str(resource["PhysicalResourceId"])
    return None


def _existing_thing(iot: Any, name: str) -> bool:
    try:
        iot.describe_thing(thingName=name)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            return False
        raise
    return True


def _add(
    args: argparse.Namespace,
    settings: Mapping[str, str],
    iot: Any,
    cloudformation: Any,
    stdout: TextIO,
) -> None:
    name = str(args.name)
    if not _THING_NAME.match(name):
        raise DevicesCommandError(
            f"{name!r} is not a thing name: 1 to 128 letters, digits and : _ -"
        )
    policy = args.policy_name or stack_value(cloudformation, THING_POLICY_OUTPUT, THING_POLICY)
    if not policy:
        raise DevicesCommandError(
            f"the local stack has no {THING_POLICY[0]} ({THING_POLICY[1]}) resource nor "
            f"{THING_POLICY_OUTPUT} output; pass --policy-name POLICY"
        )
    try:
        iot.get_policy(policyName=policy)
    except ClientError as exc:
        if _code(exc) == "ResourceNotFoundException":
            raise DevicesCommandError(f"there is no IoT policy named {policy!r}") from exc
        raise
    out_dir = Path(args.out)
    files = {
        "cert": out_dir / f"{name}.cert.pem",
        "key": out_dir / f"{name}.private.key",
        "json": out_dir / f"{name}.json",
    }
    existing = [str(path) for path in files.values() if path.exists()]
    if existing:
        raise DevicesCommandError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
            "remove them or pass another --out"
        )
    ca_file = settings.get("TIDINGS_CA_FILE")
    if not ca_file or not Path(ca_file).is_file():
        raise DevicesCommandError(
            f"the stack's server CA file ({ca_file or 'TIDINGS_CA_FILE'}) is missing; "
            "restart the stack"
        )
    if _existing_thing(iot, name):
        raise DevicesCommandError(
            f"a thing named {name!r} already exists; pick another name or tidings devices "
            f"remove {name}"
        )
    iot.create_thing(thingName=name)
    certificate: dict[str, Any] = {}
    try:
        certificate = iot.create_keys_and_certificate(setAsActive=True)
        iot.attach_policy(policyName=policy, target=certificate["certificateArn"])
        iot.attach_thing_principal(thingName=name, principal=certificate["certificateArn"])
    except BaseException:
        _undo_add(iot, name, policy, certificate.get("certificateArn"))
        raise
    out_dir.mkdir(parents=True, exist_ok=True)
    files["cert"].write_text(certificate["certificatePem"], encoding="utf-8")
    fd = os.open(files["key"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as key_out:
        os.fchmod(key_out.fileno(), 0o600)
        key_out.write(certificate["keyPair"]["PrivateKey"])
    shutil.copyfile(ca_file, out_dir / ROOT_CA_FILE)
    mqtt_port = settings.get("TIDINGS_MQTT_PORT")
    wss_port = settings.get("TIDINGS_IOT_PORT")
    description = {
        "thingName": name,
        "certificateId": certificate["certificateId"],
        "certificateArn": certificate["certificateArn"],
        "policyName": policy,
        "endpoint": settings.get("TIDINGS_IOT_ENDPOINT", "localhost"),
        "mqttPort": int(mqtt_port) if mqtt_port else None,
        "wssPort": int(wss_port) if wss_port else None,
        "roleAlias": stack_value(cloudformation, ROLE_ALIAS_OUTPUT, ROLE_ALIAS),
        "credentialsEndpoint": settings.get("TIDINGS_CREDENTIALS_ENDPOINT") or None,
        "region": settings.get("AWS_REGION") or "us-east-1",
        "topicPrefix": f"tidings/{settings.get('TIDINGS_STAGE') or 'dev'}/",
    }
    files["json"].write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    print(
        f"added {name} (certificate {certificate['certificateId']}, policy {policy}); "
        f"its files are in {out_dir}: {files['cert'].name}, {files['key'].name}, "
        f"{ROOT_CA_FILE}, {files['json'].name}",
        file=stdout,
    )


def _undo_add(iot: Any, name: str, policy: str, arn: str | None) -> None:
    """Delete what a failed ``add`` made (best effort: the first failure is the one shown)."""
    import contextlib

    steps: list[Any] = []
    if arn is not None:
        cert_id = arn.rpartition("/")[2]
        steps += [
            lambda: iot.detach_thing_principal(thingName=name, principal=arn),
            lambda: iot.detach_policy(policyName=policy, target=arn),
            lambda: iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE"),
            lambda: iot.delete_certificate(certificateId=cert_id),
        ]
    steps.append(lambda: iot.delete_thing(thingName=name))
    for step in steps:
        with contextlib.suppress(ClientError, BotoCoreError):
            step()


def _pages(call: Any, key: str, *, token_key: str = "nextToken", **params: Any) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = call(**params, **({token_key: token} if token else {}))
        yield from page.get(key, [])
        token = page.get(token_key)
        if not token:
            return


def _certificate_arns(iot: Any, name: str) -> list[str]:
    """The certificates attached to thing ``name``; an unknown thing is the operator's error."""
    if not _existing_thing(iot, name):
        raise DevicesCommandError(f"there is no thing named {name!r}; see tidings devices list")
    return [
        str(principal)
        for principal in _pages(iot.list_thing_principals, "principals", thingName=name)
        if ":cert/" in str(principal)
    ]


def _list(iot: Any, stdout: TextIO) -> None:
    things = sorted(str(t["thingName"]) for t in _pages(iot.list_things, "things"))
    for name in things:
        arns = _certificate_arns(iot, name)
        if not arns:
            print(f"{name}\t-\t-", file=stdout)
        for arn in sorted(arns):
            cert_id = arn.rpartition("/")[2]
            try:
                status = iot.describe_certificate(certificateId=cert_id)["certificateDescription"][
                    "status"
                ]
            except ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                status = "DELETED"
            print(f"{name}\t{cert_id}\t{status}", file=stdout)
    if not things:
        print("no devices", file=sys.stderr)


def _deactivate(iot: Any, name: str) -> list[str]:
    cert_ids = [arn.rpartition("/")[2] for arn in _certificate_arns(iot, name)]
    if not cert_ids:
        raise DevicesCommandError(f"thing {name!r} has no certificate")
    for cert_id in cert_ids:
        iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    return cert_ids


def _remove(iot: Any, name: str, stdout: TextIO) -> None:
    kept = _delete_device(iot, name)
    for arn in kept:
        print(
            f"kept certificate {arn.rpartition('/')[2]}: other things are attached to it",
            file=stdout,
        )
    print(f"removed {name}", file=stdout)


def _delete_device(iot: Any, name: str) -> list[str]:
    """Delete thing ``name`` as on AWS: detach each certificate's policies and the thing,
    set the certificate INACTIVE, delete it, then delete the thing. A certificate other
    things hold is detached from this one only; returns those certificates' ARNs."""
    kept: list[str] = []
    for arn in _certificate_arns(iot, name):
        iot.detach_thing_principal(thingName=name, principal=arn)
        if list(_pages(iot.list_principal_things, "things", principal=arn)):
            kept.append(arn)
            continue
        policies = [
            str(p["policyName"]) for p in iot.list_attached_policies(target=arn)["policies"]
        ]
        for policy in policies:
            iot.detach_policy(policyName=policy, target=arn)
        cert_id = arn.rpartition("/")[2]
        iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
        iot.delete_certificate(certificateId=cert_id)
    iot.delete_thing(thingName=name)
    return kept
