"""Temporary credentials shaped like a Cognito identity's, for gateway tests.

The policies mirror what Tidings attaches: the authenticated role's IAM policy and the IoT
policy attached to the identity, both scoped with ``${cognito-identity.amazonaws.com:sub}``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from infra.local.awsauth.credential_store import CredentialStore, StoredCredential
from infra.local.awsauth.temporary_credentials import mint_temporary_credential

REGION = "us-east-1"
ACCOUNT = "123456789012"
SUB = "${cognito-identity.amazonaws.com:sub}"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"


def identity_policies(stage: str = "dev") -> list[list[dict[str, Any]]]:
    """[role policy documents], [IoT policy documents] for a signed-in identity."""
    prefix = f"tidings/{stage}"
    statements = [
        {
            "Effect": "Allow",
            "Action": "iot:Connect",
            "Resource": [f"{ARN}:client/{SUB}", f"{ARN}:client/{SUB}-*"],
        },
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": [
                f"{ARN}:topicfilter/{prefix}/users/{SUB}/*",
                f"{ARN}:topicfilter/{prefix}/public/*",
            ],
        },
        {
            "Effect": "Allow",
            "Action": "iot:Receive",
            "Resource": [f"{ARN}:topic/{prefix}/users/{SUB}/*", f"{ARN}:topic/{prefix}/public/*"],
        },
        {
            "Effect": "Allow",
            "Action": ["iot:Publish", "iot:RetainPublish"],
            "Resource": [f"{ARN}:topic/{prefix}/users/{SUB}/*"],
        },
    ]
    role = [{"Version": "2012-10-17", "Statement": statements}]
    iot = [{"Version": "2012-10-17", "Statement": statements}]
    return [role, iot]


def publisher_policies(stage: str = "dev") -> list[list[dict[str, Any]]]:
    """A backend role that may publish anywhere under the stage prefix (iot-data)."""
    return [
        [
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iot:Publish",
                        "Resource": f"{ARN}:topic/tidings/{stage}/*",
                    },
                ],
            }
        ]
    ]


@dataclass
class Identity:
    """A signed-in test identity and its current credentials."""

    identity_id: str
    credential: StoredCredential

    @property
    def access_key(self) -> str:
        return self.credential.access_key_id

    @property
    def secret_key(self) -> str:
        return self.credential.secret_access_key

    @property
    def token(self) -> str:
        assert self.credential.session_token is not None
        return self.credential.session_token

    def topic(self, rest: str = "todos", stage: str = "dev") -> str:
        return f"tidings/{stage}/users/{self.identity_id}/{rest}"


def new_identity(
    store: CredentialStore, lifetime_s: float = 3600.0, now: float | None = None
) -> Identity:
    identity_id = f"{REGION}:{uuid.uuid4()}"
    credential = mint_temporary_credential(
        identity_id,
        identity_policies(),
        lifetime_s=lifetime_s,
        variables={"cognito-identity.amazonaws.com:sub": identity_id},
        now=now,
    )
    store.put(credential)
    return Identity(identity_id, credential)


def new_publisher(store: CredentialStore) -> Identity:
    credential = mint_temporary_credential("publisher-role/session", publisher_policies())
    store.put(credential)
    return Identity("publisher", credential)


def monitor_policies() -> list[list[dict[str, Any]]]:
    """An operator identity that may watch lifecycle events and connect as ``monitor-*``."""
    statements = [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/monitor-*"},
        {
            "Effect": "Allow",
            "Action": "iot:Subscribe",
            "Resource": f"{ARN}:topicfilter/$aws/events/*",
        },
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN}:topic/$aws/events/*"},
    ]
    return [[{"Version": "2012-10-17", "Statement": statements}]]


def new_monitor(store: CredentialStore) -> Identity:
    credential = mint_temporary_credential("operator", monitor_policies())
    store.put(credential)
    return Identity("monitor", credential)
