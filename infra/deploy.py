"""``tidings deploy`` / ``tidings destroy``: the template to a CloudFormation stack.

A deploy is computed as a plan (plain data: the package, its S3 location, the parameters, the
template as CloudFormation gets it: JSON, with the REST API's OpenAPI ``Body``, which the
template includes from ``infra/openapi.yaml`` with ``AWS::Include``, inlined), then executed:
upload the package, create a change set, show it, execute it while printing the stack events
as they arrive, and print the outputs. ``--dry-run`` stops after showing the change set (and
deletes it). The Lambda package is deterministic: sorted entries, fixed timestamps and
permissions, so the same source gives the same bytes and the same S3 key.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import data_files

__all__ = [
    "DeployError",
    "DeployPlan",
    "LambdaPackage",
    "aws_device_commands",
    "build_package",
    "deploy",
    "destroy",
    "plan_deploy",
    "render_template",
    "stack_outputs",
]

ROOT = data_files.code_root()
"""Where the packages the Lambda package is made of live (the checkout or site-packages)."""
TEMPLATE = data_files.data_file(data_files.TEMPLATE)
SOURCE_PACKAGES = ("backend", "auth")
SOURCE_FILES = (f"infra/{data_files.ROUTES}",)
LAMBDA_REQUIREMENTS = data_files.data_file(data_files.LAMBDA_REQUIREMENTS)
"""What the Lambda Python runtime lacks (it ships boto3 and botocore)."""
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
MAX_TEMPLATE_BODY_BYTES = 51_200
"""CloudFormation's limit on a ``TemplateBody`` (a larger template must be sent from S3)."""
log = logging.getLogger("tidings.deploy")
Printer = Callable[[str], None]


class DeployError(RuntimeError):
    """A deploy that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class LambdaPackage:
    """The zip every function runs from."""

    data: bytes
    sha256: str
    files: int

    @property
    def size_kib(self) -> float:
        """Size in KiB."""
        return len(self.data) / 1024


@dataclass(frozen=True)
class DeployPlan:
    """Everything a deploy will do, before it does any of it."""

    stack: str
    region: str
    stage: str
    bucket: str
    key: str
    package: LambdaPackage
    parameters: dict[str, str] = field(default_factory=dict)
    template_body: str = ""


def _source_entries(root: Path) -> Iterable[tuple[str, Path]]:
    for package in SOURCE_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if (
                path.is_file()
                and path.suffix in (".py", ".typed", ".yaml", ".json")
                and ("__pycache__" not in path.parts)
            ):
                yield path.relative_to(root).as_posix(), path
    for name in SOURCE_FILES:
        yield name, root / name


def _dependency_entries(target: Path) -> Iterable[tuple[str, Path]]:
    for path in sorted(target.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            yield path.relative_to(target).as_posix(), path


def install_dependencies(target: Path, requirements: Path = LAMBDA_REQUIREMENTS) -> None:
    """pip-install the Lambda's extra dependencies for the Lambda platform into ``target``."""
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise DeployError(
            "building the Lambda package needs pip in this environment: "
            "install tidings with its deploy extra, pip install 'tidings[deploy]'"
        )
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--platform",
        "manylinux2014_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--only-binary=:all:",
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        log.info("pip's output:\n%s", result.stderr)
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise DeployError(
            "installing the Lambda dependencies with pip failed "
            f"({lines[-1] if lines else f'exit status {result.returncode}'}); check that PyPI "
            "is reachable, and run tidings -v deploy ... to see pip's whole output"
        )


def build_package(root: Path = ROOT, *, dependencies_dir: Path | None = None) -> LambdaPackage:
    """Zip the source (and, if given, an installed dependencies folder) deterministically."""
    entries = dict(_source_entries(root))
    if dependencies_dir is not None:
        for name, path in _dependency_entries(dependencies_dir):
            entries.setdefault(name, path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name].read_bytes())
    data = buffer.getvalue()
    return LambdaPackage(data, hashlib.sha256(data).hexdigest(), len(entries))


def plan_deploy(
    stack: str,
    region: str,
    stage: str,
    account_id: str,
    *,
    with_dependencies: bool = True,
    extra_parameters: dict[str, str] | None = None,
    template: Path = TEMPLATE,
    iot_endpoint: str | None = None,
) -> DeployPlan:
    """Build the package and decide where it goes; no AWS call is made."""
    if with_dependencies:
        with tempfile.TemporaryDirectory() as scratch:
            install_dependencies(Path(scratch))
            package = build_package(dependencies_dir=Path(scratch))
    else:
        package = build_package()
    bucket = f"tidings-artifacts-{account_id}-{region}"
    key = f"lambda/{package.sha256}.zip"
    parameters = {"Stage": stage, "CodeBucket": bucket, "CodeKey": key}
    if iot_endpoint:
        parameters["IotEndpoint"] = iot_endpoint
    parameters.update(extra_parameters or {})
    return DeployPlan(
        stack, region, stage, bucket, key, package, parameters, render_template(template)
    )


def render_template(template: Path = TEMPLATE) -> str:
    """The template as CloudFormation gets it: compact JSON, with every ``AWS::Include`` of a
    local file (the REST API's ``Body``, ``infra/openapi.yaml``) inlined, as ``aws
    cloudformation package`` would upload it; CloudFormation resolves the intrinsic functions
    inside. Raises :class:`DeployError` if it exceeds the ``TemplateBody`` limit."""
    import json

    from infra.local.stack.template_model import TemplateError, load_template

    try:
        body = load_template(template).body
    except TemplateError as exc:
        raise DeployError(str(exc)) from exc
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    size = len(text.encode("utf-8"))
    if size > MAX_TEMPLATE_BODY_BYTES:
        raise DeployError(
            f"{template} with its OpenAPI document inlined is {size} bytes, over "
            f"CloudFormation's {MAX_TEMPLATE_BODY_BYTES}-byte TemplateBody limit: shorten it, "
            "or send the template from S3 (TemplateURL)"
        )
    return text


def iot_data_endpoint(region: str) -> str:
    """The account's ATS IoT data endpoint (clients connect there)."""
    endpoint = _client("iot", region).describe_endpoint(endpointType="iot:Data-ATS")
    return str(endpoint["endpointAddress"])


def _client(service: str, region: str) -> Any:
    import boto3

    session: Any = boto3.session.Session(region_name=region)
    return session.client(service)


def _ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError:
        options: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**options)


def _stack_exists(cloudformation: Any, stack: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        status = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
    except ClientError:
        return False
    return bool(status != "REVIEW_IN_PROGRESS")


def deploy(
    plan: DeployPlan, *, dry_run: bool = False, out: Printer = print, timeout_s: float = 1800.0
) -> dict[str, str]:
    """Execute a plan; returns the stack outputs (empty on a dry run)."""
    from botocore.exceptions import ClientError

    cloudformation = _client("cloudformation", plan.region)
    out(
        f"Package: {plan.package.files} files, {plan.package.size_kib:.0f} KiB "
        f"(sha256 {plan.package.sha256[:12]})"
    )
    try:
        if not dry_run:
            s3 = _client("s3", plan.region)
            _ensure_bucket(s3, plan.bucket, plan.region)
            s3.put_object(Bucket=plan.bucket, Key=plan.key, Body=plan.package.data)
            out(f"Uploaded s3://{plan.bucket}/{plan.key}")
        exists = _stack_exists(cloudformation, plan.stack)
        change_set = f"tidings-{int(time.time())}"
        cloudformation.create_change_set(
            StackName=plan.stack,
            ChangeSetName=change_set,
            ChangeSetType="UPDATE" if exists else "CREATE",
            TemplateBody=plan.template_body,
            Parameters=[
                {"ParameterKey": k, "ParameterValue": v} for k, v in sorted(plan.parameters.items())
            ],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        )
        description = _wait_change_set(cloudformation, plan.stack, change_set, timeout_s)
    except ClientError as exc:
        raise DeployError(f"CloudFormation refused the change: {exc}") from exc
    changes = description.get("Changes", [])
    out(f"Change set {change_set} ({'update' if exists else 'create'}): {len(changes)} changes")
    for change in changes:
        rc = change.get("ResourceChange", {})
        out(
            f"  {rc.get('Action', '?'):8} {rc.get('LogicalResourceId', '?'):32} "
            f"{rc.get('ResourceType', '?')}"
        )
    if dry_run:
        cloudformation.delete_change_set(StackName=plan.stack, ChangeSetName=change_set)
        if not exists:
            cloudformation.delete_stack(StackName=plan.stack)
        out("Dry run: nothing was changed.")
        return {}
    if description.get("Status") == "FAILED" and not changes:
        out("No changes to deploy.")
        return stack_outputs(plan.stack, plan.region, cloudformation=cloudformation)
    started = time.time()
    cloudformation.execute_change_set(StackName=plan.stack, ChangeSetName=change_set)
    status = _follow_events(cloudformation, plan.stack, started, len(changes), out, timeout_s)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        raise DeployError(f"stack {plan.stack} ended in {status}; see the events above")
    outputs = stack_outputs(plan.stack, plan.region, cloudformation=cloudformation)
    try:
        endpoint = _client("iot", plan.region).describe_endpoint(endpointType="iot:Data-ATS")
        outputs.setdefault("IotDataEndpoint", endpoint["endpointAddress"])
    except ClientError as exc:  # pragma: no cover - depends on the account
        out(f"(could not read the IoT data endpoint: {exc})")
    for key, value in sorted(outputs.items()):
        out(f"{key}: {value}")
    _print_device_commands(cloudformation, plan, outputs, out)
    return outputs


def _physical_id(cloudformation: Any, stack: str, logical_id: str) -> str | None:
    pages = cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack)
    for page in pages:
        for resource in page.get("StackResourceSummaries", []):
            if resource.get("LogicalResourceId") == logical_id:
                return resource.get("PhysicalResourceId") or None
    return None


def _print_device_commands(
    cloudformation: Any, plan: DeployPlan, outputs: dict[str, str], out: Printer
) -> None:
    """What ``tidings devices add`` does locally, as AWS CLI commands for this stack."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        policy = outputs.get("ThingPolicyName") or _physical_id(
            cloudformation, plan.stack, "ThingPolicy"
        )
        alias = outputs.get("DeviceRoleAliasName") or _physical_id(
            cloudformation, plan.stack, "DeviceRoleAlias"
        )
        iot = _client("iot", plan.region)
        credentials = iot.describe_endpoint(endpointType="iot:CredentialProvider")
    except (ClientError, BotoCoreError) as exc:  # pragma: no cover - depends on the account
        out(f"(could not read the device settings: {exc})")
        return
    if not policy or not alias:
        return  # a template without the device side
    data = outputs.get("IotDataEndpoint") or plan.parameters.get("IotEndpoint", "")
    for line in aws_device_commands(
        policy, alias, data, credentials["endpointAddress"], plan.region
    ):
        out(line)


AMAZON_ROOT_CA_URL = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"


def aws_device_commands(
    policy: str, role_alias: str, data_endpoint: str, credentials_endpoint: str, region: str
) -> list[str]:
    """What ``tidings devices add NAME`` does, for a stack on AWS: the AWS CLI commands to
    run (``NAME`` and ``CERT_ARN`` to fill in), then where the device connects."""
    where = f"--region {shlex.quote(region)}"
    return [
        "Devices (X.509 things): for each, with the AWS CLI (NAME: the thing's name):",
        f"  aws iot create-thing --thing-name NAME {where}",
        "  CERT_ARN=$(aws iot create-keys-and-certificate --set-as-active "
        "--certificate-pem-outfile NAME.cert.pem --private-key-outfile NAME.private.key "
        f"--query certificateArn --output text {where})",
        f'  aws iot attach-policy --policy-name {shlex.quote(policy)} --target "$CERT_ARN" {where}',
        f'  aws iot attach-thing-principal --thing-name NAME --principal "$CERT_ARN" {where}',
        f"  curl -o root-ca.pem {AMAZON_ROOT_CA_URL}",
        f"  then: MQTT over mutual TLS to {data_endpoint}:8883 (or 443 with ALPN "
        f"x-amzn-mqtt-ca), client id NAME; credentials from https://{credentials_endpoint}"
        f"/role-aliases/{role_alias}/credentials",
    ]


def destroy(stack: str, region: str, *, out: Printer = print, timeout_s: float = 1800.0) -> None:
    """Delete the stack and wait until it is gone."""
    cloudformation = _client("cloudformation", region)
    if not _stack_exists(cloudformation, stack):
        out(f"Stack {stack} does not exist.")
        return
    started = time.time()
    cloudformation.delete_stack(StackName=stack)
    status = _follow_events(cloudformation, stack, started, 0, out, timeout_s)
    if status not in ("DELETE_COMPLETE", "GONE"):
        raise DeployError(f"stack {stack} ended in {status}")
    out(f"Stack {stack} deleted.")


def _wait_change_set(cloudformation: Any, stack: str, name: str, timeout_s: float) -> Any:
    deadline = time.time() + timeout_s
    while True:
        description = cloudformation.describe_change_set(StackName=stack, ChangeSetName=name)
        if description["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return description
        if time.time() > deadline:
            raise DeployError(f"change set {name} was not ready within {timeout_s:.0f} s")
        time.sleep(1.0)


def _follow_events(
    cloudformation: Any, stack: str, since: float, expected: int, out: Printer, timeout_s: float
) -> str:
    from botocore.exceptions import ClientError

    seen: set[str] = set()
    done: set[str] = set()
    deadline = time.time() + timeout_s
    while True:
        try:
            stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
            events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
        except ClientError:
            return "GONE"
        for event in reversed(events):
            event_id = event["EventId"]
            stamp = (
                event["Timestamp"].timestamp()
                if hasattr(event["Timestamp"], "timestamp")
                else since
            )
            if event_id in seen or stamp < since - 1:
                continue
            seen.add(event_id)
            status = event.get("ResourceStatus", "")
            if status.endswith("_COMPLETE") and event["LogicalResourceId"] != stack:
                done.add(event["LogicalResourceId"])
            progress = f"[{len(done)}/{expected}]" if expected else f"[{len(done)}]"
            reason = (
                f" - {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
            )
            out(
                f"{progress:9} {status:28} {event['LogicalResourceId']:32} "
                f"{event.get('ResourceType', '')}{reason}"
            )
        status = stacks[0]["StackStatus"]
        if not status.endswith("_IN_PROGRESS"):
            return str(status)
        if time.time() > deadline:
            raise DeployError(f"stack {stack} still {status} after {timeout_s:.0f} s")
        time.sleep(float(os.environ.get("TIDINGS_DEPLOY_POLL_S", "2")))


def stack_outputs(stack: str, region: str, *, cloudformation: Any = None) -> dict[str, str]:
    """A deployed stack's outputs (``ApiUrl``, ``TodosTableName``, ...), by key.

    Raises :class:`DeployError` saying what to do when the stack cannot be read: it does not
    exist, there are no credentials, or AWS cannot be reached.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    client = cloudformation if cloudformation is not None else _client("cloudformation", region)
    try:
        stacks = client.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            raise DeployError(
                f"stack {stack!r} does not exist in {region}: deploy it with "
                f"`tidings deploy --stack {stack} --region {region}`, or check the name and region"
            ) from exc
        raise DeployError(f"stack {stack!r} in {region} could not be read: {exc}") from exc
    except NoCredentialsError as exc:
        raise DeployError(
            f"no AWS credentials to read stack {stack!r} in {region}: configure the default "
            "credential chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, "
            "an instance or SSO role)"
        ) from exc
    except BotoCoreError as exc:
        raise DeployError(
            f"AWS is not reachable to read stack {stack!r} in {region}: {exc}"
        ) from exc
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
