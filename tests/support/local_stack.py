"""Helpers for tests that run the whole local stack."""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.local.awsauth.credential_store import StoredCredential
from infra.local.stack.local_stack import TEMPLATE, LocalStack, StackConfig
from tests.support.openapi import checked


def stack_config(template: Path = TEMPLATE, **overrides) -> StackConfig:
    """A config on free ports with its own state directory."""
    options = dict(
        state_dir=Path(tempfile.mkdtemp(prefix="tidings-test-")),
        template=template,
        gateway_port=0,
        api_port=0,
        identity_port=0,
        moto_port=0,
        web_port=0,
        mqtt_port=0,
        credentials_port=0,
    )
    options.update(overrides)
    return StackConfig(**options)


def edited_template(tmp_path: Path, edit: Callable[[str], str]) -> Path:
    """A copy of the template with ``edit`` applied to its text (must change something)."""
    text = TEMPLATE.read_text(encoding="utf-8")
    changed = edit(text)
    assert changed != text, "the edit did not change the template"
    path = tmp_path / "template.yaml"
    path.write_text(changed, encoding="utf-8")
    return path


def set_mapping_property(text: str, mapping: str, prop: str, value: str) -> str:
    """Change one property of one event source mapping in the template text."""
    block = re.search(rf"  {mapping}:\n(?:    .*\n|      .*\n|\n)+", text)
    assert block, mapping
    updated = re.sub(rf"(      {prop}: ).*", rf"\g<1>{value}", block.group(0), count=1)
    return text.replace(block.group(0), updated)


def add_user(stack: LocalStack, name: str, password: str, tenants: set[str]) -> None:
    from auth.passwords import hash_password
    from auth.store import UsersStore

    UsersStore(stack.client("dynamodb"), stack.tables["UsersTable"]).add_user(
        name, hash_password(password), frozenset(tenants)
    )


def ensure_user(stack: LocalStack, name: str, password: str, tenants: set[str]) -> None:
    """:func:`add_user`, unless the user exists already (a user the README names, added by
    every module that runs its examples, in whatever order they share a stack)."""
    from auth.errors import UserExists

    with contextlib.suppress(UserExists):
        add_user(stack, name, password, tenants)


def login_over_https(stack: LocalStack, user: str, password: str) -> dict[str, Any]:
    """POST /v1/login over HTTPS with a password, as a client does; the 200 answer."""
    import requests

    answer = requests.post(
        f"{stack.api_url}/v1/login",
        json={"method": "password", "username": user, "password": password},
        verify=stack.ca_file,
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    checked(answer)
    return dict(answer.json())


def cognito_client(stack: LocalStack) -> Any:
    """An unsigned cognito-identity client on the stack's identity service (no retries)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    return boto3.client(
        "cognito-identity",
        endpoint_url=stack.identity_url,
        region_name=stack.config.region,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


def credentials_for(stack: LocalStack, answer: dict[str, Any]) -> StoredCredential:
    """GetCredentialsForIdentity with a login answer's OpenID token, as the test clients
    take them."""
    creds = cognito_client(stack).get_credentials_for_identity(
        IdentityId=answer["identityId"],
        Logins={"cognito-identity.amazonaws.com": answer["token"]},
    )["Credentials"]
    return StoredCredential(
        access_key_id=creds["AccessKeyId"],
        secret_access_key=creds["SecretKey"],
        session_token=creds["SessionToken"],
        principal=answer["identityId"],
        expiration=creds["Expiration"].timestamp(),
    )
