"""From the routes to the policy documents that let a Cognito identity read its channels.

One source (``backend.routes``), three outputs that must agree (a table-driven test checks
it): :func:`backend.access.may_read` (the channels API), :func:`role_policy` (the identity
pool's authenticated role) and the IoT policies of :func:`iot_policies` (attached to each
identity with ``AttachPolicy(target=identityId)``). Both policy sets must allow an MQTT
action, so the effective permission is their intersection.

How each reader kind is expressed (channel template ``a/{x}/b`` under ``tidings/<stage>/``):

- ``owner:x``  — ``{x}`` becomes ``${cognito-identity.amazonaws.com:sub}`` in both documents,
  in the identity policy every identity gets;
- ``tenant:x`` — the role allows ``a/*/b`` (IAM has no tenant variable for developer
  identities); each tenant ``T`` gets its own IoT policy allowing exactly ``a/T/b``, attached
  only to members of ``T``;
- ``public``   — the channel itself, in both documents.

Any other placeholder becomes ``*``. IAM's ``*`` also matches ``/``, so every such pattern
comes with a ``Deny`` of the patterns where a placeholder would span several segments
(``a/*/*/b``): a policy never allows a topic that is not a channel of its route.

Actions: ``iot:Connect`` on ``client/<identityId>`` and ``client/<identityId>-*``;
``iot:Subscribe`` on ``topicfilter/…`` and ``iot:Receive`` on ``topic/…`` for readable
channels. Clients never publish (the backend does), so no ``iot:Publish`` is granted. No
statement uses a ``*`` action, and every resource names its region, account and prefix.

A route with ``writers: owner:<attr>`` (``<attr>`` being its table's partition key) also gets
one role statement: the item actions of :data:`WRITE_ACTIONS` on the table, under
``ForAllValues:StringEquals`` ``dynamodb:LeadingKeys`` = ``${cognito-identity.amazonaws.com:sub}``,
so a page writes its identity's own partition with the identity's own credentials.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.access import Principal
from backend.routes import Route

__all__ = [
    "SUB_VARIABLE",
    "WRITE_ACTIONS",
    "PolicyScope",
    "iot_policies",
    "readable_channels",
    "role_policy",
    "write_statement",
]

SUB_VARIABLE = "${cognito-identity.amazonaws.com:sub}"
LEADING_KEYS = "dynamodb:LeadingKeys"
WRITE_ACTIONS = (
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)
"""What ``writers: owner:<attr>`` allows on its table: AWS's own example of item-level access
by Cognito identity (IAM User Guide, "Amazon DynamoDB: Allows item-level access to DynamoDB
based on an Amazon Cognito ID"). Query is there so a page can list its own items (a Query
names one partition, so LeadingKeys limits it as it limits the item actions)."""
VERSION = "2012-10-17"
READ_ACTIONS = (("iot:Subscribe", "topicfilter"), ("iot:Receive", "topic"))
_PLACEHOLDER = re.compile(r"\A\{([A-Za-z_][A-Za-z0-9_]*)\}\Z")
_POLICY_NAME_CHARS = re.compile(r"[^\w+=,.@-]")

Document = dict[str, Any]


@dataclass(frozen=True)
class PolicyScope:
    """Where the policies apply: region, account, stage, and the IoT policy name prefix."""

    region: str
    account_id: str
    stage: str
    policy_prefix: str = ""

    @property
    def arn(self) -> str:
        """``arn:aws:iot:<region>:<account>``."""
        return f"arn:aws:iot:{self.region}:{self.account_id}"

    @property
    def prefix(self) -> str:
        """The IoT policy name prefix (``tidings-<stage>`` unless configured)."""
        return self.policy_prefix or f"tidings-{self.stage}"

    def resource(self, kind: str, channel_pattern: str) -> str:
        """``arn:aws:iot:…:<kind>/tidings/<stage>/<channel_pattern>``."""
        return f"{self.arn}:{kind}/tidings/{self.stage}/{channel_pattern}"


def _pattern(template: str, route: Route, tenant: str | None) -> tuple[str, list[str]]:
    """The IAM pattern of a channel template and the patterns where a ``*`` spans segments."""
    segments = template.split("/")
    out: list[str] = []
    wild: list[int] = []
    for index, segment in enumerate(segments):
        match = _PLACEHOLDER.match(segment)
        if match is None:
            out.append(segment)
            continue
        name = match.group(1)
        if route.readers.placeholder == name and route.readers.kind == "owner":
            out.append(SUB_VARIABLE)
        elif route.readers.placeholder == name and tenant is not None:
            out.append(tenant)
        else:
            out.append("*")
            wild.append(index)
    spills = []
    for index in wild:
        spilled = list(out)
        spilled[index] = "*/*"
        spills.append("/".join(spilled))
    return "/".join(out), spills


def _read_statements(scope: PolicyScope, patterns: Iterable[tuple[str, list[str]]]) -> list[Any]:
    allowed: list[str] = []
    denied: list[str] = []
    for pattern, spills in patterns:
        if pattern not in allowed:
            allowed.append(pattern)
        denied.extend(s for s in spills if s not in denied)
    statements: list[Any] = []
    for action, kind in READ_ACTIONS:
        if allowed:
            statements.append(
                {
                    "Effect": "Allow",
                    "Action": action,
                    "Resource": [scope.resource(kind, p) for p in allowed],
                }
            )
    for action, kind in READ_ACTIONS:
        if denied:
            statements.append(
                {
                    "Effect": "Deny",
                    "Action": action,
                    "Resource": [scope.resource(kind, p) for p in denied],
                }
            )
    return statements


def _connect_statement(scope: PolicyScope) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": "iot:Connect",
        "Resource": [f"{scope.arn}:client/{SUB_VARIABLE}", f"{scope.arn}:client/{SUB_VARIABLE}-*"],
    }


def role_policy(
    routes: Sequence[Route],
    scope: PolicyScope,
    api_arn: str | None = None,
    table_arns: Mapping[str, str] | None = None,
) -> Document:
    """The IAM policy of the identity pool's authenticated role.

    With ``api_arn`` (``arn:aws:execute-api:<region>:<account>:<api id>``) it also allows
    ``GET /v1/channels/*`` on that API; the API itself checks :func:`~backend.access.may_read`.
    With ``table_arns`` (table logical id → table ARN) it also allows each route's
    ``writers`` (:func:`write_statement`); a route with writers whose table has no ARN there
    raises ``KeyError``.
    """
    patterns = [_pattern(t, r, None) for r in routes for t in r.channels]
    statements = [_connect_statement(scope), *_read_statements(scope, patterns)]
    if api_arn:
        statements.append(
            {
                "Effect": "Allow",
                "Action": "execute-api:Invoke",
                "Resource": f"{api_arn}/*/GET/v1/channels/*",
            }
        )
    if table_arns is not None:
        statements.extend(
            write_statement(table_arns[route.table]) for route in routes if route.writers
        )
    return {"Version": VERSION, "Statement": statements}


def write_statement(table_arn: str) -> dict[str, Any]:
    """Allow the item actions of :data:`WRITE_ACTIONS` on one table, limited to the items
    whose partition key is the caller's identity id (``dynamodb:LeadingKeys``).

    ``ForAllValues`` holds when every partition key the request touches is the identity's;
    a request that names no partition key (Scan) would pass it vacuously, which is why Scan
    is never granted. Transactions need these same actions per item, each item checked on its
    own key; the batch actions (``BatchWriteItem``, ``BatchGetItem``) are not granted.
    """
    return {
        "Effect": "Allow",
        "Action": list(WRITE_ACTIONS),
        "Resource": table_arn,
        "Condition": {"ForAllValues:StringEquals": {LEADING_KEYS: [SUB_VARIABLE]}},
    }


def identity_iot_policy(routes: Sequence[Route], scope: PolicyScope) -> Document:
    """The IoT policy every identity gets: connect as itself, its own and public channels."""
    patterns = [
        _pattern(t, r, None) for r in routes if r.readers.kind != "tenant" for t in r.channels
    ]
    return {
        "Version": VERSION,
        "Statement": [_connect_statement(scope), *_read_statements(scope, patterns)],
    }


def tenant_iot_policy(routes: Sequence[Route], scope: PolicyScope, tenant: str) -> Document:
    """The IoT policy for members of ``tenant``: exactly that tenant's channels."""
    patterns = [
        _pattern(t, r, tenant) for r in routes if r.readers.kind == "tenant" for t in r.channels
    ]
    return {"Version": VERSION, "Statement": _read_statements(scope, patterns)}


def policy_name(scope: PolicyScope, label: str, document: Document) -> str:
    """``<prefix>-<label>-<hash of the document>``: a changed document gets a new name.

    The login attaches policies by name and remembers the names, so a route change (new
    document, new name) is picked up at the identity's next login.
    """
    digest = hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()[:12]
    safe = _POLICY_NAME_CHARS.sub("_", label)[: 128 - len(scope.prefix) - 14]
    return f"{scope.prefix}-{safe}-{digest}"


def iot_policies(
    routes: Sequence[Route], scope: PolicyScope, tenants: Iterable[str]
) -> dict[str, Document]:
    """Policy name → document: every IoT policy an identity in ``tenants`` must have."""
    base = identity_iot_policy(routes, scope)
    out = {policy_name(scope, "identity", base): base}
    if any(r.readers.kind == "tenant" for r in routes):
        for tenant in sorted(set(tenants)):
            document = tenant_iot_policy(routes, scope, tenant)
            out[policy_name(scope, f"tenant-{tenant}", document)] = document
    return out


def readable_channels(routes: Sequence[Route], principal: Principal) -> list[str]:
    """The channels ``principal`` may read, as templates filled as far as its identity allows.

    Placeholders that are not the reader placeholder stay as ``{name}``
    (``tenants/acme/orders/{orderId}``).
    """
    out: list[str] = []
    for route in routes:
        placeholder = route.readers.placeholder
        if route.readers.kind == "owner":
            values = [principal.identity_id]
        elif route.readers.kind == "tenant":
            values = sorted(principal.tenants)
        else:
            values = [""]
        for template in route.channels:
            for value in values:
                filled = (
                    template
                    if placeholder is None
                    else template.replace("{" + placeholder + "}", value)
                )
                if filled not in out:
                    out.append(filled)
    return out
